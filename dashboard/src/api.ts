// The dashboard's link to the server: the Convex client (admin), function references
// by name, errors as messages, and the JSON form of Convex values used in editors.
import { ConvexReactClient } from "convex/react";
import type { FunctionReference } from "convex/server";
import type { Value } from "convex/values";

export const SYSTEM = "_system/dashboard/";

/** The API is the origin that served the page (the dashboard lives on the API port). */
export const API_URL = window.location.origin;

type Kind = "query" | "mutation" | "action";

/** A reference to the function at `path` (the client accepts names as references). */
export function fn<K extends Kind>(path: string): FunctionReference<K, "public", any, any> {
  return path as unknown as FunctionReference<K, "public", any, any>;
}

export const sys = {
  query: (name: string) => fn<"query">(SYSTEM + name),
  mutation: (name: string) => fn<"mutation">(SYSTEM + name),
  action: (name: string) => fn<"action">(SYSTEM + name),
};

/** An admin client: every call runs as the deployment's admin. */
export function adminClient(adminKey: string): ConvexReactClient {
  const client = new ConvexReactClient(API_URL, {
    skipConvexDeploymentUrlCheck: true,
    unsavedChangesWarning: false,
  });
  // setAdminAuth is not in the public typings, but it is how admin tools authenticate.
  (client as unknown as { setAdminAuth(key: string): void }).setAdminAuth(adminKey);
  return client;
}

/** The text to show for an error thrown by a call: a ConvexError's `message`, else its own. */
export function errorText(error: unknown): string {
  if (error && typeof error === "object") {
    const data = (error as { data?: unknown }).data;
    if (data && typeof data === "object" && typeof (data as any).message === "string") {
      const code = (data as any).code;
      return code ? `${code}: ${(data as any).message}` : (data as any).message;
    }
    if (typeof data === "string") return data;
    const message = (error as { message?: unknown }).message;
    if (typeof message === "string") return cleanMessage(message);
  }
  return String(error);
}

/** Drops the client's "[CONVEX Q(...)] [Request ID: ...] Server Error" preamble. */
function cleanMessage(message: string): string {
  return message
    .replace(/^\[CONVEX [^\]]*\]\s*/, "")
    .replace(/^\[Request ID: [^\]]*\]\s*/, "")
    .replace(/^Server Error\s*/, "")
    .replace(/\s*Called by client$/, "")
    .trim();
}

// ---------------------------------------------------------------------------
// Values in editors: JSON with {"$int64": "5"} for Int64 and {"$bytes": "<base64>"}.

export function bytesToBase64(buffer: ArrayBuffer): string {
  let text = "";
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text);
}

function base64ToBytes(text: string): ArrayBuffer {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes.buffer;
}

/** `value` as plain JSON (Int64 and bytes as tagged objects). */
export function toEditable(value: Value | undefined): unknown {
  if (typeof value === "bigint") return { $int64: value.toString() };
  if (value instanceof ArrayBuffer) return { $bytes: bytesToBase64(value) };
  if (Array.isArray(value)) return value.map(toEditable);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toEditable(v);
    return out;
  }
  return value;
}

/** The Convex value of editor JSON (the inverse of toEditable); throws on a bad tag. */
export function fromEditable(json: unknown): Value {
  if (Array.isArray(json)) return json.map(fromEditable);
  if (json !== null && typeof json === "object") {
    const keys = Object.keys(json);
    const obj = json as Record<string, unknown>;
    if (keys.length === 1 && keys[0] === "$int64") {
      const raw = obj.$int64;
      if (typeof raw !== "string" || !/^-?\d+$/.test(raw)) {
        throw new Error(`{"$int64": ...} takes a string of digits, got ${JSON.stringify(raw)}`);
      }
      return BigInt(raw);
    }
    if (keys.length === 1 && keys[0] === "$bytes") {
      if (typeof obj.$bytes !== "string") throw new Error(`{"$bytes": ...} takes base64 text`);
      try {
        return base64ToBytes(obj.$bytes);
      } catch {
        throw new Error(`{"$bytes": ...} is not valid base64`);
      }
    }
    const out: Record<string, Value> = {};
    for (const k of keys) {
      if (obj[k] !== undefined) out[k] = fromEditable(obj[k]);
    }
    return out;
  }
  if (json === undefined) throw new Error("undefined is not a Convex value");
  return json as Value;
}

/** Parse editor text; the error names what is wrong in words. */
export function parseEditor(text: string): Value {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`Malformed JSON: ${(e as Error).message}`);
  }
  return fromEditable(json);
}

export function pretty(value: Value | undefined): string {
  return JSON.stringify(toEditable(value), null, 2) ?? "undefined";
}

/** A short one-line rendering for a table cell. */
export function brief(value: Value | undefined): string {
  if (value === undefined) return "";
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof ArrayBuffer) return `bytes(${value.byteLength})`;
  if (typeof value === "string") return value;
  const text = JSON.stringify(toEditable(value));
  return text.length > 200 ? text.slice(0, 200) + "…" : text;
}

// Syncline ids: Crockford base32, lowercase.
const ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{31,37}$/;

export function looksLikeId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

export function formatTime(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---------------------------------------------------------------------------
// Validators (Convex's JSON form) as types, and default values for argument forms.

export type ValidatorJson = { type: string; [key: string]: any };

export function typeText(v: ValidatorJson | null | undefined): string {
  if (!v) return "any";
  switch (v.type) {
    case "number":
      return "float64";
    case "bigint":
      return "int64";
    case "id":
      return `Id<"${v.tableName}">`;
    case "literal":
      return JSON.stringify(v.value);
    case "array":
      return `${wrap(v.value)}[]`;
    case "record":
      return `Record<${typeText(v.keys)}, ${typeText(v.values?.fieldType)}>`;
    case "union":
      return (v.value as ValidatorJson[]).map(typeText).join(" | ");
    case "object": {
      const fields = Object.entries(v.value as Record<string, any>).map(
        ([name, f]) => `${name}${f.optional ? "?" : ""}: ${typeText(f.fieldType)}`,
      );
      return fields.length ? `{ ${fields.join("; ")} }` : "{}";
    }
    default:
      return v.type;
  }
}

function wrap(v: ValidatorJson): string {
  const text = typeText(v);
  return v.type === "union" ? `(${text})` : text;
}

/** A value that fits `v`, for pre-filling a form (optional fields left out). */
export function sampleOf(v: ValidatorJson | null | undefined): unknown {
  if (!v) return {};
  switch (v.type) {
    case "string":
    case "id":
      return "";
    case "number":
      return 0;
    case "bigint":
      return { $int64: "0" };
    case "boolean":
      return false;
    case "bytes":
      return { $bytes: "" };
    case "literal":
      return v.value;
    case "array":
      return [];
    case "record":
      return {};
    case "union":
      return sampleOf((v.value as ValidatorJson[])[0]);
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [name, f] of Object.entries(v.value as Record<string, any>)) {
        if (!f.optional) out[name] = sampleOf(f.fieldType);
      }
      return out;
    }
    default:
      return null;
  }
}
