// Data: the tables with their counts, and one table's documents (live, paginated,
// virtualised), ordered by an index, filtered; a document panel; insert, edit, delete,
// clear, export.
import { useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useConvex, useMutation, usePaginatedQuery, useQuery } from "convex/react";
import type { Value } from "convex/values";
import {
  brief,
  errorText,
  looksLikeId,
  parseEditor,
  sampleOf,
  sys,
  toEditable,
  type ValidatorJson,
} from "../api";
import { Boundary, go } from "../App";
import { DocumentPanel } from "./DocumentPanel";

type TableInfo = { name: string; count: number; hasSchema: boolean };
type SchemaTable = {
  name: string;
  document: ValidatorJson;
  indexes: { name: string; fields: string[] }[];
};
type Doc = Record<string, Value> & { _id: string; _creationTime: number };

export type Bound = { value: Value; inclusive: boolean };
export type PageArgs = {
  table: string;
  index: string;
  order: "asc" | "desc";
  eq?: [string, Value][];
  lower?: Bound;
  upper?: Bound;
  filters?: [string, Value][];
};

const ROW_HEIGHT = 30;
const FIRST_PAGE = 100;
const MORE = 500;

export function DataPage({ table }: { table?: string }) {
  const tables = useQuery(sys.query("data:tables"), {}) as TableInfo[] | undefined;
  const current = table ?? tables?.[0]?.name;
  return (
    <div className="split">
      <aside className="sidebar" aria-label="Tables">
        <h2>Tables</h2>
        {tables === undefined ? (
          <p className="muted">Loading…</p>
        ) : tables.length === 0 ? (
          <p className="muted">No tables yet.</p>
        ) : (
          <ul className="list">
            {tables.map((t) => (
              <li key={t.name}>
                <a
                  href={`#/data/${encodeURIComponent(t.name)}`}
                  aria-current={t.name === current ? "page" : undefined}
                  data-table={t.name}
                >
                  <span>{t.name}</span>
                  <span className="count">{t.count.toLocaleString("en-US")}</span>
                </a>
              </li>
            ))}
          </ul>
        )}
      </aside>
      <section className="content">
        {current ? (
          <TableView
            key={current}
            table={current}
            count={tables?.find((t) => t.name === current)?.count}
          />
        ) : (
          <p className="muted">Insert a document from a function, or pick a table.</p>
        )}
      </section>
    </div>
  );
}

function indexesOf(schema: SchemaTable | undefined) {
  return [
    { name: "by_creation_time", fields: ["_creationTime"] },
    { name: "by_id", fields: ["_id"] },
    ...(schema?.indexes ?? []),
  ];
}

function TableView({ table, count }: { table: string; count?: number }) {
  const schema = useQuery(sys.query("data:schema"), {}) as
    | { tables: SchemaTable[] }
    | null
    | undefined;
  const tableSchema = schema?.tables.find((t) => t.name === table);
  const [args, setArgs] = useState<PageArgs>({ table, index: "by_creation_time", order: "desc" });
  const [selected, setSelected] = useState<string | null>(null);
  const [inserting, setInserting] = useState(false);
  const argsKey = JSON.stringify(toEditable(args as unknown as Value));
  return (
    <div className="table-view">
      <div className="toolbar">
        <h2>
          {table}{" "}
          {count !== undefined && (
            <span className="muted" data-testid="table-count">
              {count.toLocaleString("en-US")} {count === 1 ? "document" : "documents"}
            </span>
          )}
        </h2>
        <span className="spacer" />
        <button type="button" onClick={() => setInserting(true)}>
          Insert document
        </button>
        <ExportButton args={args} />
        <ClearButton table={table} />
      </div>
      <QueryForm
        table={table}
        indexes={indexesOf(tableSchema)}
        onApply={(next) => setArgs(next)}
      />
      <div className="table-and-panel">
        <Boundary key={argsKey}>
          <Rows
            args={args}
            schema={tableSchema}
            selected={selected}
            onSelect={(id) => {
              setSelected(id);
              setInserting(false);
            }}
          />
        </Boundary>
        {inserting ? (
          <InsertPanel
            table={table}
            schema={tableSchema}
            onClose={() => setInserting(false)}
            onInserted={(id) => {
              setInserting(false);
              setSelected(id);
            }}
          />
        ) : (
          selected && (
            <DocumentPanel
              id={selected}
              onOpen={setSelected}
              onClose={() => setSelected(null)}
            />
          )
        )}
      </div>
    </div>
  );
}

/** Order and filters; applied on submit (typing does not re-query). */
function QueryForm({
  table,
  indexes,
  onApply,
}: {
  table: string;
  indexes: { name: string; fields: string[] }[];
  onApply: (args: PageArgs) => void;
}) {
  const [index, setIndex] = useState("by_creation_time");
  const [order, setOrder] = useState<"asc" | "desc">("desc");
  const [eq, setEq] = useState<string[]>([]);
  const [lower, setLower] = useState("");
  const [lowerIncl, setLowerIncl] = useState(true);
  const [upper, setUpper] = useState("");
  const [upperIncl, setUpperIncl] = useState(true);
  const [filters, setFilters] = useState<{ field: string; value: string }[]>([]);
  const [error, setError] = useState<string | null>(null);
  const fields = indexes.find((i) => i.name === index)?.fields ?? [];
  const eqCount = eq.filter((x) => x.trim() !== "").length;
  const rangeField = fields[eqCount];

  function parse(text: string, what: string): Value {
    try {
      return parseEditor(text);
    } catch {
      // A bare word is a string: `todo` as well as `"todo"`.
      if (!/^[\s[{"]/.test(text)) return text;
      throw new Error(`${what}: ${text} is not a JSON value`);
    }
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    try {
      const next: PageArgs = { table, index, order };
      const eqPairs: [string, Value][] = [];
      for (let i = 0; i < fields.length; i++) {
        const text = (eq[i] ?? "").trim();
        if (text === "") break;
        eqPairs.push([fields[i], parse(text, fields[i])]);
      }
      if (eqPairs.length) next.eq = eqPairs;
      if (rangeField !== undefined && lower.trim())
        next.lower = { value: parse(lower.trim(), `${rangeField} from`), inclusive: lowerIncl };
      if (rangeField !== undefined && upper.trim())
        next.upper = { value: parse(upper.trim(), `${rangeField} to`), inclusive: upperIncl };
      const pairs = filters
        .filter((f) => f.field.trim())
        .map((f): [string, Value] => [f.field.trim(), parse(f.value.trim(), f.field)]);
      if (pairs.length) next.filters = pairs;
      setError(null);
      onApply(next);
    } catch (e) {
      setError((e as Error).message);
    }
  }

  return (
    <form className="query-form" onSubmit={submit} aria-label="Filters">
      <label>
        Index{" "}
        <select
          aria-label="Index"
          value={index}
          onChange={(e) => {
            setIndex(e.target.value);
            setEq([]);
          }}
        >
          {indexes.map((i) => (
            <option key={i.name} value={i.name}>
              {i.name} ({i.fields.join(", ")})
            </option>
          ))}
        </select>
      </label>
      <label>
        Order{" "}
        <select aria-label="Order" value={order} onChange={(e) => setOrder(e.target.value as "asc" | "desc")}>
          <option value="desc">descending</option>
          <option value="asc">ascending</option>
        </select>
      </label>
      {fields.map((field, i) =>
        i <= eqCount ? (
          <label key={field}>
            {field} ={" "}
            <input
              size={10}
              value={eq[i] ?? ""}
              placeholder="any"
              onChange={(e) => {
                const next = [...eq];
                next[i] = e.target.value;
                setEq(next);
              }}
            />
          </label>
        ) : null,
      )}
      {rangeField !== undefined && (
        <>
          <label>
            {rangeField} from{" "}
            <input size={8} value={lower} onChange={(e) => setLower(e.target.value)} />
          </label>
          <label className="inline">
            <input
              type="checkbox"
              checked={lowerIncl}
              onChange={(e) => setLowerIncl(e.target.checked)}
            />{" "}
            incl.
          </label>
          <label>
            to <input size={8} value={upper} onChange={(e) => setUpper(e.target.value)} />
          </label>
          <label className="inline">
            <input
              type="checkbox"
              checked={upperIncl}
              onChange={(e) => setUpperIncl(e.target.checked)}
            />{" "}
            incl.
          </label>
        </>
      )}
      {filters.map((f, i) => (
        <span key={i} className="filter">
          <input
            aria-label={`Filter ${i + 1} field`}
            size={8}
            placeholder="field"
            value={f.field}
            onChange={(e) =>
              setFilters(filters.map((x, j) => (j === i ? { ...x, field: e.target.value } : x)))
            }
          />
          {" = "}
          <input
            aria-label={`Filter ${i + 1} value`}
            size={8}
            placeholder="value"
            value={f.value}
            onChange={(e) =>
              setFilters(filters.map((x, j) => (j === i ? { ...x, value: e.target.value } : x)))
            }
          />
          <button
            type="button"
            aria-label={`Remove filter ${i + 1}`}
            onClick={() => setFilters(filters.filter((_, j) => j !== i))}
          >
            ×
          </button>
        </span>
      ))}
      <button type="button" onClick={() => setFilters([...filters, { field: "", value: "" }])}>
        Add filter
      </button>
      <button type="submit">Apply</button>
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

function columnsOf(schema: SchemaTable | undefined, docs: Doc[]): string[] {
  const seen = new Set<string>(["_id"]);
  const columns = ["_id"];
  const add = (name: string) => {
    if (!seen.has(name) && name !== "_creationTime") {
      seen.add(name);
      columns.push(name);
    }
  };
  if (schema?.document?.type === "object") Object.keys(schema.document.value).forEach(add);
  for (const doc of docs.slice(0, 200)) Object.keys(doc).forEach(add);
  columns.push("_creationTime");
  return columns;
}

function Rows({
  args,
  schema,
  selected,
  onSelect,
}: {
  args: PageArgs;
  schema?: SchemaTable;
  selected: string | null;
  onSelect: (id: string) => void;
}) {
  const { results, status, loadMore } = usePaginatedQuery(
    sys.query("data:page"),
    args as unknown as Record<string, Value>,
    { initialNumItems: FIRST_PAGE },
  );
  const docs = results as Doc[];
  const columns = useMemo(() => columnsOf(schema, docs), [schema, docs]);
  const [loadAll, setLoadAll] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  // Near the bottom (or asked to load everything): fetch the next page.
  const nearEnd = scrollTop + height >= docs.length * ROW_HEIGHT - 10 * ROW_HEIGHT;
  useEffect(() => {
    if (status === "CanLoadMore" && (nearEnd || loadAll)) loadMore(loadAll ? 1000 : MORE);
  }, [status, nearEnd, loadAll, loadMore]);

  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - 10);
  const last = Math.min(docs.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + 10);
  const visible = docs.slice(first, last);
  // One row is in the Tab order (the selected one, else the first on screen); arrows move.
  const tabStop = visible.some((d) => d._id === selected) ? selected : visible[0]?._id;

  function onKey(event: KeyboardEvent<HTMLDivElement>, position: number) {
    const move = event.key === "ArrowDown" ? 1 : event.key === "ArrowUp" ? -1 : 0;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onSelect(docs[position]._id);
    } else if (move) {
      event.preventDefault();
      const target = Math.min(docs.length - 1, Math.max(0, position + move));
      const el = scroller.current!;
      const top = target * ROW_HEIGHT;
      if (top < el.scrollTop) el.scrollTop = top;
      else if (top + 2 * ROW_HEIGHT > el.scrollTop + el.clientHeight)
        el.scrollTop = top + 2 * ROW_HEIGHT - el.clientHeight;
      requestAnimationFrame(() =>
        el.querySelector<HTMLElement>(`[data-row="${target}"]`)?.focus(),
      );
    }
  }

  const width = columns.length * 170;
  return (
    <div className="rows-wrap">
      <div className="rows-status" aria-live="polite">
        <span data-testid="loaded">
          {status === "LoadingFirstPage"
            ? "Loading…"
            : `${docs.length.toLocaleString("en-US")} loaded`}
        </span>
        {status === "Exhausted" && <span data-testid="end"> · end of table</span>}
        {status === "LoadingMore" && <span> · loading more…</span>}
        {status === "CanLoadMore" && (
          <>
            {" "}
            <button type="button" onClick={() => loadMore(MORE)}>
              Load more
            </button>{" "}
            <button type="button" onClick={() => setLoadAll(true)}>
              Load all
            </button>
          </>
        )}
      </div>
      <div
        className="grid"
        role="table"
        aria-label={`Documents of ${args.table}`}
        aria-rowcount={docs.length + 1}
        ref={scroller}
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      >
        <div className="grid-head" role="row" style={{ width }}>
          {columns.map((c) => (
            <span role="columnheader" key={c}>
              {c}
            </span>
          ))}
        </div>
        <div style={{ height: docs.length * ROW_HEIGHT, width, position: "relative" }}>
          {visible.map((doc, i) => {
            const position = first + i;
            return (
              <div
                key={doc._id}
                role="row"
                tabIndex={doc._id === tabStop ? 0 : -1}
                data-row={position}
                data-id={doc._id}
                aria-rowindex={position + 2}
                aria-selected={doc._id === selected}
                className="grid-row"
                style={{ top: position * ROW_HEIGHT, width }}
                onClick={() => onSelect(doc._id)}
                onKeyDown={(e) => onKey(e, position)}
              >
                {columns.map((c) => (
                  <span role="cell" key={c} title={brief(doc[c])}>
                    <Cell name={c} value={doc[c]} onOpen={onSelect} />
                  </span>
                ))}
              </div>
            );
          })}
        </div>
        {status !== "LoadingFirstPage" && docs.length === 0 && (
          <p className="muted pad">No documents match.</p>
        )}
      </div>
    </div>
  );
}

function Cell({
  name,
  value,
  onOpen,
}: {
  name: string;
  value: Value | undefined;
  onOpen: (id: string) => void;
}) {
  if (value === undefined) return <span className="muted">—</span>;
  if (name === "_creationTime" && typeof value === "number")
    return <>{new Date(value).toISOString().replace("T", " ").replace("Z", "")}</>;
  if (name !== "_id" && looksLikeId(value)) {
    return (
      <a
        href="#"
        className="id-link"
        onClick={(e) => {
          e.preventDefault();
          e.stopPropagation();
          onOpen(value);
        }}
      >
        {value}
      </a>
    );
  }
  if (typeof value === "bigint") return <span className="t-int64">{brief(value)}</span>;
  if (value instanceof ArrayBuffer) return <span className="t-bytes">{brief(value)}</span>;
  return <>{brief(value)}</>;
}

function InsertPanel({
  table,
  schema,
  onClose,
  onInserted,
}: {
  table: string;
  schema?: SchemaTable;
  onClose: () => void;
  onInserted: (id: string) => void;
}) {
  const insert = useMutation(sys.mutation("data:insert"));
  const sample = JSON.stringify(sampleOf(schema?.document), null, 2);
  const [text, setText] = useState(sample);
  const [edited, setEdited] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // The schema may arrive after the panel opens: fill the editor from it until the
  // user has typed.
  useEffect(() => {
    if (!edited) setText(sample);
  }, [sample, edited]);
  async function save() {
    try {
      const document = parseEditor(text);
      const id = (await insert({ table, document })) as string;
      onInserted(id);
    } catch (e) {
      setError(errorText(e));
    }
  }
  return (
    <aside className="panel" aria-label="Insert a document">
      <div className="toolbar">
        <h3>New document in {table}</h3>
        <span className="spacer" />
        <button type="button" onClick={onClose} aria-label="Close">
          ×
        </button>
      </div>
      <label htmlFor="insert-json">Document (JSON)</label>
      <textarea
        id="insert-json"
        className="editor"
        spellCheck={false}
        value={text}
        onChange={(e) => {
          setEdited(true);
          setText(e.target.value);
        }}
        rows={14}
      />
      <p className="muted small">
        Int64: <code>{'{"$int64": "5"}'}</code>, bytes: <code>{'{"$bytes": "<base64>"}'}</code>
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <button type="button" onClick={save}>
        Insert
      </button>
    </aside>
  );
}

function ExportButton({ args }: { args: PageArgs }) {
  const convex = useConvex();
  const [state, setState] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function run() {
    setBusy(true);
    setState("Exporting…");
    try {
      const lines: string[] = [];
      let cursor: string | null = null;
      for (;;) {
        const page = (await convex.query(sys.query("data:page"), {
          ...(args as unknown as Record<string, Value>),
          paginationOpts: { numItems: 1000, cursor },
        })) as { page: Doc[]; isDone: boolean; continueCursor: string };
        for (const doc of page.page) lines.push(JSON.stringify(toEditable(doc)));
        setState(`Exporting… ${lines.length}`);
        if (page.isDone) break;
        cursor = page.continueCursor;
      }
      const blob = new Blob(lines.map((l) => l + "\n"), { type: "application/x-ndjson" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `${args.table}.jsonl`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
      setState(null);
    } catch (e) {
      setState(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <>
      <button type="button" onClick={run} disabled={busy}>
        Export JSONL
      </button>
      {state && <span className="muted">{state}</span>}
    </>
  );
}

function ClearButton({ table }: { table: string }) {
  const clear = useMutation(sys.mutation("data:clear"));
  const [confirming, setConfirming] = useState(false);
  const [state, setState] = useState<string | null>(null);
  async function run() {
    setConfirming(false);
    let deleted = 0;
    try {
      for (;;) {
        const r = (await clear({ table })) as { deleted: number; done: boolean };
        deleted += r.deleted;
        setState(`Deleted ${deleted}…`);
        if (r.done) break;
      }
      setState(null);
      go("data", table);
    } catch (e) {
      setState(errorText(e));
    }
  }
  if (confirming)
    return (
      <span className="confirm" role="group" aria-label="Confirm clearing">
        Delete every document of {table}?{" "}
        <button type="button" className="danger" onClick={run}>
          Clear table
        </button>{" "}
        <button type="button" onClick={() => setConfirming(false)}>
          Cancel
        </button>
      </span>
    );
  return (
    <>
      <button type="button" onClick={() => setConfirming(true)}>
        Clear table…
      </button>
      {state && <span className="muted">{state}</span>}
    </>
  );
}
