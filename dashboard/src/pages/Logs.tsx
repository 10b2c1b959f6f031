// Logs: a live tail of finished function calls (GET /api/admin/logs, newline-delimited
// JSON, read as a stream), after the recent history; filters; pause and resume.
import { useEffect, useMemo, useRef, useState } from "react";
import { API_URL, formatTime } from "../api";
import { authHeader } from "../auth";

type Call = {
  id?: number;
  timestamp: number;
  path: string;
  kind: string | null;
  status: "success" | "failure";
  durationMs: number;
  requestId: string;
  caller?: string;
  logLines: string[];
  /** answered from the query cache: no code ran */
  cached?: boolean;
  error: string | null;
  traceback: string | null;
};

const KEEP = 1000;

const callKey = (c: Call) => `${c.requestId} ${c.path} ${c.status}`;
const HISTORY = 100;

type StreamState = "connecting" | "live" | "down";

/** Calls as they finish, with the last HISTORY before them; reconnects by itself. */
function useCallStream(adminKey: string, paused: boolean) {
  const [calls, setCalls] = useState<Call[]>([]);
  const [state, setState] = useState<StreamState>("connecting");
  const [dropped, setDropped] = useState(0);
  const pausedRef = useRef(paused);
  const held = useRef<Call[]>([]);
  pausedRef.current = paused;

  useEffect(() => {
    if (!paused && held.current.length) {
      const more = held.current;
      held.current = [];
      setCalls((prev) => [...more.reverse(), ...prev].slice(0, KEEP));
    }
  }, [paused]);

  useEffect(() => {
    const abort = new AbortController();
    let stopped = false;
    const add = (call: Call) => {
      if (pausedRef.current) {
        held.current.push(call);
        if (held.current.length > KEEP) held.current.shift();
      } else setCalls((prev) => [call, ...prev].slice(0, KEEP));
    };

    async function history() {
      try {
        const r = await fetch(`${API_URL}/api/admin/log_history?limit=${HISTORY}`, {
          headers: authHeader(adminKey),
          signal: abort.signal,
        });
        if (!r.ok) return; // a server without a log history: the live tail only
        const body = (await r.json()) as { records: Call[] };
        // The stream opened first: a call may be in both.
        setCalls((prev) => {
          const seen = new Set(prev.map(callKey));
          const older = body.records.filter((c) => !seen.has(callKey(c))).reverse();
          return [...prev, ...older].slice(0, KEEP);
        });
      } catch {
        /* the live tail still works */
      }
    }

    async function follow() {
      let delay = 250;
      while (!stopped) {
        try {
          setState("connecting");
          const r = await fetch(`${API_URL}/api/admin/logs`, {
            headers: { ...authHeader(adminKey), Accept: "application/x-ndjson" },
            signal: abort.signal,
          });
          if (!r.ok || !r.body) throw new Error(`status ${r.status}`);
          const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let nl: number;
            while ((nl = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, nl).trim();
              buffer = buffer.slice(nl + 1);
              if (!line) continue;
              const entry = JSON.parse(line);
              if (entry.type === "connected") {
                setState("live");
                delay = 250;
              } else if (entry.type === "call") add(entry as Call);
              else if (entry.type === "dropped") setDropped((d) => d + entry.count);
            }
          }
        } catch {
          if (stopped) return;
        }
        setState("down");
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }

    void history();
    void follow();
    return () => {
      stopped = true;
      abort.abort();
    };
  }, [adminKey]);

  return { calls, state, dropped, held: held.current.length, clear: () => setCalls([]) };
}

export function LogsPage({ adminKey }: { adminKey: string }) {
  const [paused, setPaused] = useState(false);
  const { calls, state, dropped, clear } = useCallStream(adminKey, paused);
  const [fnFilter, setFnFilter] = useState("");
  const [status, setStatus] = useState("");
  const [text, setText] = useState("");
  const [open, setOpen] = useState<string | null>(null);

  const shown = useMemo(() => {
    const needle = text.toLowerCase();
    return calls.filter(
      (c) =>
        (!fnFilter || c.path.includes(fnFilter)) &&
        (!status || c.status === status) &&
        (!needle ||
          [c.path, c.requestId, c.error ?? "", ...c.logLines].some((s) =>
            s.toLowerCase().includes(needle),
          )),
    );
  }, [calls, fnFilter, status, text]);

  return (
    <div className="logs-page">
      <div className="toolbar">
        <h2>Logs</h2>
        <span className={`pill stream-${state}`} role="status" data-stream={state}>
          {paused ? "paused" : state === "live" ? "live" : state === "down" ? "reconnecting…" : "connecting…"}
        </span>
        {dropped > 0 && <span className="muted">{dropped} calls were not shown (too many)</span>}
        <span className="spacer" />
        <label>
          Function{" "}
          <input
            size={14}
            value={fnFilter}
            onChange={(e) => setFnFilter(e.target.value)}
            placeholder="module or path"
          />
        </label>
        <label>
          Status{" "}
          <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
          </select>
        </label>
        <label>
          Text <input size={14} value={text} onChange={(e) => setText(e.target.value)} />
        </label>
        <button type="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? "Resume" : "Pause"}
        </button>
        <button type="button" onClick={clear}>
          Clear view
        </button>
      </div>
      <table className="log-table" aria-label="Function calls">
        <thead>
          <tr>
            <th>Time</th>
            <th>Function</th>
            <th>Kind</th>
            <th>Status</th>
            <th>Duration</th>
            <th>Request</th>
            <th>Logs / error</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((c) => {
            const key = `${callKey(c)} ${c.timestamp}`;
            return (
              <tr
                key={key}
                className={c.status === "failure" ? "failed" : undefined}
                data-path={c.path}
              >
                <td className="nowrap">{formatTime(c.timestamp)}</td>
                <td>{c.path}</td>
                <td>{c.kind}</td>
                <td>{c.status}</td>
                <td className="num">
                  {c.cached ? "cached" : `${c.durationMs.toFixed(1)} ms`}
                </td>
                <td className="mono small">{c.requestId}</td>
                <td>
                  {c.logLines.length > 0 && <pre className="logs">{c.logLines.join("\n")}</pre>}
                  {c.error && (
                    <>
                      <pre className="error">{c.error}</pre>
                      {c.traceback && (
                        <button
                          type="button"
                          onClick={() => setOpen(open === key ? null : key)}
                          aria-expanded={open === key}
                        >
                          Traceback
                        </button>
                      )}
                      {open === key && <pre className="logs">{c.traceback}</pre>}
                    </>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {shown.length === 0 && <p className="muted pad">No calls yet{paused ? " (paused)" : ""}.</p>}
    </div>
  );
}
