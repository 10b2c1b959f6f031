// Schedules: scheduled functions by state (cancel pending ones) and the cron jobs.
import { useState } from "react";
import { useMutation, usePaginatedQuery, useQuery } from "convex/react";
import type { Value } from "convex/values";
import { errorText, formatTime, pretty, sys } from "../api";

type Job = {
  _id: string;
  _creationTime: number;
  name: string;
  args: Value[];
  scheduledTime: number;
  completedTime?: number;
  state: { kind: string; error?: string };
};

type Cron = {
  name: string;
  schedule: string;
  function: string;
  args: Value;
  nextRun: number | null;
  lastRun: { ts: number; status: "success" | "failure"; error?: string } | null;
};

const STATES = ["", "pending", "inProgress", "success", "failed", "canceled"];

export function SchedulesPage() {
  const [state, setState] = useState("");
  return (
    <div className="stack">
      <section>
        <div className="toolbar">
          <h2>Scheduled functions</h2>
          <span className="spacer" />
          <label>
            State{" "}
            <select aria-label="State" value={state} onChange={(e) => setState(e.target.value)}>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s || "any"}
                </option>
              ))}
            </select>
          </label>
        </div>
        <Jobs key={state} state={state} />
      </section>
      <section>
        <h2>Cron jobs</h2>
        <Crons />
      </section>
    </div>
  );
}

function Jobs({ state }: { state: string }) {
  const { results, status, loadMore } = usePaginatedQuery(
    sys.query("schedules:list"),
    state ? { state } : {},
    { initialNumItems: 50 },
  );
  const cancel = useMutation(sys.mutation("schedules:cancel"));
  const [error, setError] = useState<string | null>(null);
  const jobs = results as Job[];
  return (
    <>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table className="data-table" aria-label="Scheduled functions">
        <thead>
          <tr>
            <th>Function</th>
            <th>Args</th>
            <th>Scheduled for</th>
            <th>State</th>
            <th>Completed</th>
            <th>
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job._id} data-id={job._id} data-state={job.state.kind}>
              <td>{job.name}</td>
              <td>
                <code className="small">{pretty(job.args[0] ?? {}).replace(/\s+/g, " ")}</code>
              </td>
              <td className="nowrap">{formatTime(job.scheduledTime)}</td>
              <td>
                <span className={`tag state-${job.state.kind}`}>{job.state.kind}</span>
                {job.state.error && <pre className="error small">{job.state.error}</pre>}
              </td>
              <td className="nowrap">{job.completedTime ? formatTime(job.completedTime) : ""}</td>
              <td>
                {job.state.kind === "pending" && (
                  <button
                    type="button"
                    aria-label={`Cancel ${job.name} scheduled for ${formatTime(job.scheduledTime)}`}
                    onClick={() =>
                      cancel({ id: job._id }).then(
                        () => setError(null),
                        (e) => setError(errorText(e)),
                      )
                    }
                  >
                    Cancel
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {status === "LoadingFirstPage" && <p className="muted">Loading…</p>}
      {status !== "LoadingFirstPage" && jobs.length === 0 && (
        <p className="muted pad">No scheduled functions{state ? ` in state ${state}` : ""}.</p>
      )}
      {status === "CanLoadMore" && (
        <button type="button" onClick={() => loadMore(50)}>
          Load more
        </button>
      )}
    </>
  );
}

function Crons() {
  const crons = useQuery(sys.query("schedules:crons"), {}) as Cron[] | undefined;
  if (crons === undefined) return <p className="muted">Loading…</p>;
  if (crons.length === 0)
    return (
      <p className="muted">
        No cron jobs (declare them in <code>crons.py</code>).
      </p>
    );
  return (
    <table className="data-table" aria-label="Cron jobs">
      <thead>
        <tr>
          <th>Name</th>
          <th>Schedule</th>
          <th>Function</th>
          <th>Next run</th>
          <th>Last run</th>
        </tr>
      </thead>
      <tbody>
        {crons.map((c) => (
          <tr key={c.name}>
            <td>{c.name}</td>
            <td>{c.schedule}</td>
            <td>
              {c.function}{" "}
              <code className="small">{pretty(c.args).replace(/\s+/g, " ")}</code>
            </td>
            <td className="nowrap">{c.nextRun ? formatTime(c.nextRun) : "—"}</td>
            <td>
              {c.lastRun ? (
                <>
                  <span className={`tag state-${c.lastRun.status}`}>{c.lastRun.status}</span>{" "}
                  {formatTime(c.lastRun.ts)}
                  {c.lastRun.error && <pre className="error small">{c.lastRun.error}</pre>}
                </>
              ) : (
                "never"
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
