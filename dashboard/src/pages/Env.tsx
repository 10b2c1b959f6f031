// Environment variables: list (masked until revealed), add, edit, remove.
import { useState, type FormEvent } from "react";
import { useMutation, useQuery } from "convex/react";
import { errorText, sys } from "../api";

type Variable = { name: string; value: string };

export function EnvPage() {
  const vars = useQuery(sys.query("env:list"), {}) as Variable[] | undefined;
  const set = useMutation(sys.mutation("env:set"));
  const remove = useMutation(sys.mutation("env:remove"));
  const [revealed, setRevealed] = useState<Set<string>>(new Set());
  const [editing, setEditing] = useState<{ name: string; value: string } | null>(null);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);

  async function add(event: FormEvent) {
    event.preventDefault();
    try {
      await set({ name: name.trim(), value });
      setName("");
      setValue("");
      setError(null);
    } catch (e) {
      setError(errorText(e));
    }
  }

  async function save() {
    if (!editing) return;
    try {
      await set(editing);
      setEditing(null);
      setError(null);
    } catch (e) {
      setError(errorText(e));
    }
  }

  const toggle = (n: string) => {
    const next = new Set(revealed);
    if (next.has(n)) next.delete(n);
    else next.add(n);
    setRevealed(next);
  };

  return (
    <div className="stack">
      <h2>Environment variables</h2>
      <p className="muted">
        Functions read them with <code>ctx.env</code>; a change re-runs the live queries that read
        it.
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table className="data-table" aria-label="Environment variables">
        <thead>
          <tr>
            <th>Name</th>
            <th>Value</th>
            <th>
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {vars?.map((v) => (
            <tr key={v.name} data-name={v.name}>
              <td className="mono">{v.name}</td>
              <td className="mono">
                {editing?.name === v.name ? (
                  <input
                    aria-label={`New value of ${v.name}`}
                    value={editing.value}
                    autoFocus
                    onChange={(e) => setEditing({ name: v.name, value: e.target.value })}
                    onKeyDown={(e) => e.key === "Enter" && save()}
                  />
                ) : revealed.has(v.name) ? (
                  <span data-testid="value">{v.value}</span>
                ) : (
                  <span aria-label="hidden value">••••••••</span>
                )}
              </td>
              <td className="nowrap">
                {editing?.name === v.name ? (
                  <>
                    <button type="button" onClick={save}>
                      Save
                    </button>{" "}
                    <button type="button" onClick={() => setEditing(null)}>
                      Cancel
                    </button>
                  </>
                ) : (
                  <>
                    <button
                      type="button"
                      aria-label={`${revealed.has(v.name) ? "Hide" : "Reveal"} ${v.name}`}
                      onClick={() => toggle(v.name)}
                    >
                      {revealed.has(v.name) ? "Hide" : "Reveal"}
                    </button>{" "}
                    <button
                      type="button"
                      aria-label={`Edit ${v.name}`}
                      onClick={() => setEditing({ name: v.name, value: v.value })}
                    >
                      Edit
                    </button>{" "}
                    <button
                      type="button"
                      aria-label={`Remove ${v.name}`}
                      onClick={() => remove({ name: v.name }).catch((e) => setError(errorText(e)))}
                    >
                      Remove
                    </button>
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {vars?.length === 0 && <p className="muted">No variables set.</p>}
      <form className="query-form" onSubmit={add} aria-label="Add a variable">
        <label>
          Name <input value={name} onChange={(e) => setName(e.target.value)} required />
        </label>
        <label>
          Value <input value={value} onChange={(e) => setValue(e.target.value)} />
        </label>
        <button type="submit">Add variable</button>
      </form>
    </div>
  );
}
