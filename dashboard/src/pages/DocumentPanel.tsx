// One document, live: its fields with their Convex types; edit as JSON, delete.
import { useState } from "react";
import { useMutation, useQuery } from "convex/react";
import type { Value } from "convex/values";
import { brief, bytesToBase64, errorText, looksLikeId, parseEditor, pretty, sys } from "../api";

type Found = { table: string; document: Record<string, Value> } | null;

function typeName(value: Value): string {
  if (value === null) return "null";
  if (typeof value === "bigint") return "int64";
  if (typeof value === "number") return "float64";
  if (value instanceof ArrayBuffer) return "bytes";
  if (Array.isArray(value)) return "array";
  return typeof value === "object" ? "object" : typeof value;
}

function FieldValue({
  name,
  value,
  onOpen,
}: {
  name: string;
  value: Value;
  onOpen: (id: string) => void;
}) {
  if (name === "_creationTime" && typeof value === "number") {
    return (
      <span>
        {new Date(value).toISOString()} <span className="muted">({value})</span>
      </span>
    );
  }
  if (name !== "_id" && looksLikeId(value)) {
    return (
      <a
        href="#"
        className="id-link"
        onClick={(e) => {
          e.preventDefault();
          onOpen(value);
        }}
      >
        {value}
      </a>
    );
  }
  if (typeof value === "bigint") return <code>{value.toString()}</code>;
  if (value instanceof ArrayBuffer)
    return <code className="wrap">{bytesToBase64(value) || "(empty)"}</code>;
  if (typeof value === "string") return <span className="wrap">{value}</span>;
  if (value !== null && typeof value === "object") return <pre>{pretty(value)}</pre>;
  return <code>{brief(value)}</code>;
}

export function DocumentPanel({
  id,
  onOpen,
  onClose,
}: {
  id: string;
  onOpen: (id: string) => void;
  onClose: () => void;
}) {
  const found = useQuery(sys.query("data:get"), { id }) as Found | undefined;
  const replace = useMutation(sys.mutation("data:replace"));
  const remove = useMutation(sys.mutation("data:remove"));
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);

  async function save() {
    if (editing === null) return;
    try {
      const document = parseEditor(editing);
      await replace({ id, document });
      setEditing(null);
      setError(null);
    } catch (e) {
      setError(errorText(e));
    }
  }

  async function del() {
    try {
      await remove({ ids: [id] });
      onClose();
    } catch (e) {
      setError(errorText(e));
    }
  }

  return (
    <aside className="panel" aria-label="Document">
      <div className="toolbar">
        <h3>Document</h3>
        <span className="spacer" />
        <button type="button" onClick={onClose} aria-label="Close document">
          ×
        </button>
      </div>
      {found === undefined ? (
        <p className="muted">Loading…</p>
      ) : found === null ? (
        <p className="muted">
          No document has the id <code>{id}</code> (deleted, or not an id).
        </p>
      ) : editing !== null ? (
        <>
          <label htmlFor="doc-json">Document (JSON)</label>
          <textarea
            id="doc-json"
            className="editor"
            spellCheck={false}
            rows={16}
            value={editing}
            onChange={(e) => setEditing(e.target.value)}
          />
          <p className="muted small">
            Int64: <code>{'{"$int64": "5"}'}</code>, bytes:{" "}
            <code>{'{"$bytes": "<base64>"}'}</code>; <code>_id</code> and{" "}
            <code>_creationTime</code> are kept.
          </p>
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          <div className="buttons">
            <button type="button" onClick={save}>
              Save
            </button>
            <button
              type="button"
              onClick={() => {
                setEditing(null);
                setError(null);
              }}
            >
              Cancel
            </button>
          </div>
        </>
      ) : (
        <>
          <p className="muted small">
            in table <a href={`#/data/${encodeURIComponent(found.table)}`}>{found.table}</a>
          </p>
          <dl className="fields">
            {Object.entries(found.document).map(([name, value]) => (
              <div key={name} data-field={name}>
                <dt>
                  {name} <span className="type">{typeName(value)}</span>
                </dt>
                <dd>
                  <FieldValue name={name} value={value} onOpen={onOpen} />
                </dd>
              </div>
            ))}
          </dl>
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          {!found.table.startsWith("_") && (
            <div className="buttons">
              <button type="button" onClick={() => setEditing(pretty(found.document))}>
                Edit
              </button>
              {confirmDelete ? (
                <>
                  <button type="button" className="danger" onClick={del}>
                    Delete for good
                  </button>
                  <button type="button" onClick={() => setConfirmDelete(false)}>
                    Keep
                  </button>
                </>
              ) : (
                <button type="button" onClick={() => setConfirmDelete(true)}>
                  Delete…
                </button>
              )}
            </div>
          )}
        </>
      )}
    </aside>
  );
}
