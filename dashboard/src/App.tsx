// The page's frame: login gate, navigation, connection banner, theme, and routing.
import { Component, useCallback, useEffect, useMemo, useState, type ReactNode } from "react";
import { ConvexProvider, type ConvexReactClient } from "convex/react";
import { adminClient, errorText } from "./api";
import { forgetKey, storedKey } from "./auth";
import { Login } from "./pages/Login";
import { DataPage } from "./pages/Data";
import { FunctionsPage } from "./pages/Functions";
import { LogsPage } from "./pages/Logs";
import { SchedulesPage } from "./pages/Schedules";
import { FilesPage } from "./pages/Files";
import { EnvPage } from "./pages/Env";
import { HealthPage } from "./pages/Health";

const PAGES = [
  ["data", "Data"],
  ["functions", "Functions"],
  ["logs", "Logs"],
  ["schedules", "Schedules"],
  ["files", "Files"],
  ["env", "Environment"],
  ["health", "Schema & health"],
] as const;

/** The route: `#/<page>/<rest...>` (parts URI-decoded). */
export function useRoute(): string[] {
  const read = () =>
    window.location.hash
      .replace(/^#\/?/, "")
      .split("/")
      .filter(Boolean)
      .map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function go(...parts: string[]): void {
  window.location.hash = "#/" + parts.map(encodeURIComponent).join("/");
}

export function Root() {
  const [key, setKey] = useState<string | null>(storedKey);
  // A login link (#login=<token>) is traded for the key even when one is kept already.
  const [link, setLink] = useState(() => window.location.hash.startsWith("#login="));
  const onLogin = useCallback((k: string) => {
    setKey(k);
    setLink(false);
  }, []);
  useEffect(() => {
    const onChange = () => {
      if (window.location.hash.startsWith("#login=")) setLink(true);
    };
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  if (key === null || link) {
    return <Login onLogin={onLogin} />;
  }
  return (
    <Shell
      adminKey={key}
      onLogout={() => {
        forgetKey();
        setKey(null);
      }}
    />
  );
}

function Shell({ adminKey, onLogout }: { adminKey: string; onLogout: () => void }) {
  const client = useMemo(() => adminClient(adminKey), [adminKey]);
  useEffect(() => () => void client.close(), [client]);
  const route = useRoute();
  const page = route[0] ?? "data";
  return (
    <ConvexProvider client={client}>
      <div className="shell">
        <header className="topbar">
          <span className="brand">Syncline</span>
          <nav aria-label="Pages">
            {PAGES.map(([id, label]) => (
              <a key={id} href={`#/${id}`} aria-current={page === id ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
          <span className="spacer" />
          <ThemeToggle />
          <button type="button" onClick={onLogout}>
            Log out
          </button>
        </header>
        <ConnectionBanner client={client} />
        <main>
          <Boundary key={page}>
            <PageFor page={page} route={route} adminKey={adminKey} />
          </Boundary>
        </main>
      </div>
    </ConvexProvider>
  );
}

function PageFor({ page, route, adminKey }: { page: string; route: string[]; adminKey: string }) {
  switch (page) {
    case "data":
      return <DataPage table={route[1]} />;
    case "functions":
      return <FunctionsPage selected={route[1]} />;
    case "logs":
      return <LogsPage adminKey={adminKey} />;
    case "schedules":
      return <SchedulesPage />;
    case "files":
      return <FilesPage />;
    case "env":
      return <EnvPage />;
    case "health":
      return <HealthPage adminKey={adminKey} />;
    default:
      return <p>There is no page “{page}”.</p>;
  }
}

/** "Reconnecting" while the WebSocket is down; the client reconnects on its own. */
function ConnectionBanner({ client }: { client: ConvexReactClient }) {
  const [state, setState] = useState(() => client.connectionState());
  useEffect(() => client.subscribeToConnectionState(setState), [client]);
  if (state.isWebSocketConnected) return null;
  return (
    <div className="banner" role="status" data-connection="down">
      {state.hasEverConnected
        ? "Connection lost: reconnecting to the server…"
        : "Connecting to the server…"}
    </div>
  );
}

function ThemeToggle() {
  const [theme, setTheme] = useState(() => localStorage.getItem("syncline.theme") ?? "auto");
  useEffect(() => {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    localStorage.setItem("syncline.theme", theme);
  }, [theme]);
  return (
    <label className="inline">
      Theme{" "}
      <select value={theme} onChange={(e) => setTheme(e.target.value)} aria-label="Theme">
        <option value="auto">System</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  );
}

/** Shows a failing view's error instead of a blank page; `key` it to reset. */
export class Boundary extends Component<{ children: ReactNode }, { error: unknown }> {
  state = { error: null as unknown };
  static getDerivedStateFromError(error: unknown) {
    return { error };
  }
  render() {
    if (this.state.error !== null) {
      return (
        <div className="error" role="alert">
          <p>{errorText(this.state.error)}</p>
          <button type="button" onClick={() => this.setState({ error: null })}>
            Try again
          </button>
        </div>
      );
    }
    return this.props.children;
  }
}
