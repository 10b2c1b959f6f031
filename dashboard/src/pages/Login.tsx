// Log in with the admin key (checked before it is kept), or with a one-time link.
import { useEffect, useState, type FormEvent } from "react";
import { checkKey, redeemToken, storeKey } from "../auth";

export function Login({ onLogin }: { onLogin: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    function take() {
      const match = window.location.hash.match(/^#login=([^&]+)/);
      if (!match) return;
      // The token works once: take it out of the address bar and history first.
      history.replaceState(null, "", window.location.pathname + "#/data");
      setBusy(true);
      setError(null);
      redeemToken(decodeURIComponent(match[1]))
        .then((adminKey) => {
          storeKey(adminKey);
          onLogin(adminKey);
        })
        .catch((e: Error) => setError(e.message))
        .finally(() => setBusy(false));
    }
    take();
    window.addEventListener("hashchange", take);
    return () => window.removeEventListener("hashchange", take);
  }, [onLogin]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const candidate = key.trim();
    if (!candidate) {
      setError("Enter the admin key.");
      return;
    }
    setBusy(true);
    setError(null);
    const verdict = await checkKey(candidate);
    setBusy(false);
    if (verdict === "ok") {
      storeKey(candidate);
      onLogin(candidate);
    } else if (verdict === "wrong") {
      setError("That is not this deployment's admin key.");
    } else {
      setError(verdict);
    }
  }

  return (
    <main className="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Syncline dashboard</h1>
        <p className="muted">
          Log in with the deployment's admin key (<code>.syncline/admin_key</code>, or the link{" "}
          <code>syncline dev</code> prints). It is kept in this tab only.
        </p>
        <label htmlFor="admin-key">Admin key</label>
        <input
          id="admin-key"
          type="password"
          autoComplete="off"
          autoFocus
          value={key}
          onChange={(e) => setKey(e.target.value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Log in"}
        </button>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
