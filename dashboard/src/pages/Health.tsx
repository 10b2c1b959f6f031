// Schema & health: the active schema and its indexes; the server's figures (refreshed
// every two seconds from GET /api/admin/dashboard/health).
import { useEffect, useState } from "react";
import { useQuery } from "convex/react";
import { API_URL, sys, typeText, type ValidatorJson } from "../api";
import { authHeader } from "../auth";

type Health = {
  version: string;
  startedAt: number;
  uptimeS: number;
  database: string;
  connectedClients: number;
  liveQueries: number;
  commitsPerSecond: number;
  functions: Record<string, { calls: number; p50Ms: number | null; p95Ms: number | null }>;
};

type Schema = {
  schemaValidation: boolean;
  tables: {
    name: string;
    document: ValidatorJson;
    indexes: { name: string; fields: string[] }[];
    searchIndexes: { name: string; searchField: string; filterFields: string[] }[];
    vectorIndexes: {
      name: string;
      vectorField: string;
      dimensions: number;
      filterFields: string[];
    }[];
  }[];
};

const POLL_MS = 2000;

function useHealth(adminKey: string): [Health | null, string | null] {
  const [health, setHealth] = useState<Health | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    let timer = 0;
    async function poll() {
      try {
        const r = await fetch(`${API_URL}/api/admin/dashboard/health`, {
          headers: authHeader(adminKey),
        });
        if (!r.ok) throw new Error(`The server answered ${r.status}`);
        setHealth(await r.json());
        setError(null);
      } catch (e) {
        setError(`Health figures unavailable: ${(e as Error).message}`);
      }
      if (!stopped) timer = window.setTimeout(poll, POLL_MS);
    }
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [adminKey]);
  return [health, error];
}

function uptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${d ? `${d}d ` : ""}${h}h ${m}m ${Math.floor(s % 60)}s`;
}

export function HealthPage({ adminKey }: { adminKey: string }) {
  const [health, error] = useHealth(adminKey);
  const schema = useQuery(sys.query("data:schema"), {}) as Schema | null | undefined;
  return (
    <div className="stack">
      <h2>Health</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {health && (
        <>
          <dl className="stats">
            <div>
              <dt>Version</dt>
              <dd data-testid="version">{health.version}</dd>
            </div>
            <div>
              <dt>Uptime</dt>
              <dd>{uptime(health.uptimeS)}</dd>
            </div>
            <div>
              <dt>Database</dt>
              <dd>{health.database}</dd>
            </div>
            <div>
              <dt>Connected clients</dt>
              <dd>{health.connectedClients}</dd>
            </div>
            <div>
              <dt>Live queries</dt>
              <dd>{health.liveQueries}</dd>
            </div>
            <div>
              <dt>Commits/s (10 s)</dt>
              <dd>{health.commitsPerSecond}</dd>
            </div>
          </dl>
          <table className="data-table" aria-label="Function latency by kind">
            <thead>
              <tr>
                <th>Kind</th>
                <th>Calls</th>
                <th>p50</th>
                <th>p95</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(health.functions).map(([kind, f]) => (
                <tr key={kind}>
                  <td>{kind}</td>
                  <td className="num">{f.calls}</td>
                  <td className="num">{f.p50Ms === null ? "—" : `${f.p50Ms} ms`}</td>
                  <td className="num">{f.p95Ms === null ? "—" : `${f.p95Ms} ms`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <h2>Schema</h2>
      {schema === undefined ? (
        <p className="muted">Loading…</p>
      ) : schema === null ? (
        <p className="muted">
          No schema: documents are not checked (declare one in <code>schema.py</code>).
        </p>
      ) : (
        <>
          <p className="muted">
            Validation {schema.schemaValidation ? "on" : "off"}: {schema.tables.length} tables.
          </p>
          {schema.tables.map((t) => (
            <section key={t.name} className="schema-table">
              <h3>{t.name}</h3>
              <pre className="small">{typeText(t.document).replace(/; /g, ";\n  ")}</pre>
              <ul>
                {t.indexes.map((i) => (
                  <li key={i.name}>
                    index <code>{i.name}</code> on {i.fields.join(", ")}
                  </li>
                ))}
                {t.searchIndexes.map((i) => (
                  <li key={i.name}>
                    search index <code>{i.name}</code> on {i.searchField}
                    {i.filterFields.length > 0 && `, filters ${i.filterFields.join(", ")}`}
                  </li>
                ))}
                {t.vectorIndexes.map((i) => (
                  <li key={i.name}>
                    vector index <code>{i.name}</code> on {i.vectorField} ({i.dimensions}{" "}
                    dimensions)
                    {i.filterFields.length > 0 && `, filters ${i.filterFields.join(", ")}`}
                  </li>
                ))}
              </ul>
            </section>
          ))}
        </>
      )}
    </div>
  );
}
