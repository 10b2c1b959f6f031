// Functions: every function by module with its kind, visibility and args; run any of
// them as admin with JSON args; a query's result can be kept live.
import { useMemo, useState } from "react";
import { useAction, useQuery } from "convex/react";
import type { Value } from "convex/values";
import { errorText, fn, parseEditor, pretty, sampleOf, sys, typeText, type ValidatorJson } from "../api";
import { Boundary } from "../App";

type FunctionInfo = {
  path: string;
  module: string;
  name: string;
  kind: "query" | "mutation" | "action";
  visibility: "public" | "internal";
  args: ValidatorJson | null;
  returns: ValidatorJson | null;
};

type RunResult =
  | { status: "success"; value: Value; logLines: string[]; durationMs: number }
  | {
      status: "error";
      error: { message: string; data?: Value };
      logLines: string[];
      durationMs: number;
    };

export function FunctionsPage({ selected }: { selected?: string }) {
  const list = useQuery(sys.query("functions:list"), {}) as FunctionInfo[] | undefined;
  const [search, setSearch] = useState("");
  const modules = useMemo(() => {
    const byModule = new Map<string, FunctionInfo[]>();
    for (const f of list ?? []) {
      if (search && !f.path.toLowerCase().includes(search.toLowerCase())) continue;
      byModule.set(f.module, [...(byModule.get(f.module) ?? []), f]);
    }
    return [...byModule.entries()];
  }, [list, search]);
  const current = list?.find((f) => f.path === selected);
  return (
    <div className="split">
      <aside className="sidebar" aria-label="Functions">
        <h2>Functions</h2>
        <label className="block">
          <span className="visually-hidden">Search functions</span>
          <input
            type="search"
            placeholder="Search…"
            aria-label="Search functions"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
          />
        </label>
        {list === undefined && <p className="muted">Loading…</p>}
        {list?.length === 0 && <p className="muted">No functions are deployed.</p>}
        {modules.map(([module, fns]) => (
          <section key={module}>
            <h3 className="module">{module}</h3>
            <ul className="list">
              {fns.map((f) => (
                <li key={f.path}>
                  <a
                    href={`#/functions/${encodeURIComponent(f.path)}`}
                    aria-current={f.path === selected ? "page" : undefined}
                  >
                    <span>{f.name}</span>
                    <span className={`tag kind-${f.kind}`}>{f.kind}</span>
                    {f.visibility === "internal" && <span className="tag">internal</span>}
                  </a>
                </li>
              ))}
            </ul>
          </section>
        ))}
      </aside>
      <section className="content">
        {current ? (
          <Runner key={current.path} info={current} />
        ) : (
          <p className="muted">Pick a function to see its arguments and run it.</p>
        )}
      </section>
    </div>
  );
}

function Runner({ info }: { info: FunctionInfo }) {
  const run = useAction(sys.action("functions:run"));
  const [text, setText] = useState(() => JSON.stringify(sampleOf(info.args), null, 2));
  const [result, setResult] = useState<RunResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [running, setRunning] = useState(false);
  const [live, setLive] = useState<Record<string, Value> | null>(null);

  async function go() {
    let args: Value;
    try {
      args = parseEditor(text);
    } catch (e) {
      setError((e as Error).message);
      return;
    }
    setError(null);
    if (live !== null) {
      setLive(args as Record<string, Value>);
      return;
    }
    setRunning(true);
    try {
      setResult((await run({ path: info.path, args })) as RunResult);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setRunning(false);
    }
  }

  return (
    <div className="runner">
      <h2>
        {info.path} <span className={`tag kind-${info.kind}`}>{info.kind}</span>{" "}
        <span className="tag">{info.visibility}</span>
      </h2>
      <p>
        <strong>Args:</strong> <code>{typeText(info.args)}</code>
        {info.returns && (
          <>
            {" "}
            <strong>Returns:</strong> <code>{typeText(info.returns)}</code>
          </>
        )}
      </p>
      <label htmlFor="run-args">Arguments (JSON)</label>
      <textarea
        id="run-args"
        className="editor"
        rows={8}
        spellCheck={false}
        value={text}
        onChange={(e) => setText(e.target.value)}
      />
      <div className="buttons">
        <button type="button" onClick={go} disabled={running}>
          {running ? "Running…" : live !== null ? "Update live args" : "Run"}
        </button>
        {info.kind === "query" && (
          <label className="inline">
            <input
              type="checkbox"
              checked={live !== null}
              onChange={(e) => {
                if (!e.target.checked) return setLive(null);
                try {
                  setLive(parseEditor(text) as Record<string, Value>);
                  setError(null);
                } catch (err) {
                  setError((err as Error).message);
                }
              }}
            />{" "}
            Keep result live
          </label>
        )}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {live !== null ? (
        <Boundary key={pretty(live)}>
          <LiveResult path={info.path} args={live} />
        </Boundary>
      ) : (
        result && <ResultView result={result} />
      )}
    </div>
  );
}

function LiveResult({ path, args }: { path: string; args: Record<string, Value> }) {
  const value = useQuery(fn<"query">(path), args);
  return (
    <section className="result" aria-label="Live result" data-status="live">
      <h3>Live result</h3>
      {value === undefined ? <p className="muted">Loading…</p> : <pre>{pretty(value)}</pre>}
    </section>
  );
}

function ResultView({ result }: { result: RunResult }) {
  return (
    <section className="result" aria-label="Result" data-status={result.status}>
      <h3>
        {result.status === "success" ? "Result" : "Error"}{" "}
        <span className="muted" data-testid="duration">
          {result.durationMs.toFixed(1)} ms
        </span>
      </h3>
      {result.status === "success" ? (
        <pre data-testid="result-value">{pretty(result.value)}</pre>
      ) : (
        <pre className="error" role="alert">
          {result.error.message}
          {result.error.data !== undefined && "\n" + pretty(result.error.data)}
        </pre>
      )}
      {result.logLines.length > 0 && (
        <>
          <h4>Logs</h4>
          <pre className="logs">{result.logLines.join("\n")}</pre>
        </>
      )}
    </section>
  );
}
