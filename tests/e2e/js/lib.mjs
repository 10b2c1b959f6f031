// Shared helpers for the end-to-end scenarios run by tests/e2e/test_js_client.py.
//
// Every scenario script calls `run(name, body)`. `body(check)` records named
// checks and returns extra results. `run` prints ONE JSON line on stdout
// ({scenario, ok, checks, results, error?}), closes every client and exits
// 0 (all checks passed) or 1. The Convex client's own logging goes to stderr.
//
// Inputs come from the environment: SYNCLINE_URL (the server's base URL) and,
// for some scenarios, SYNCLINE_TOKEN / SYNCLINE_SUBJECT.

import WebSocket from "ws";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";

const writeResultLine = (line) => process.stdout.write(line + "\n");
// Keep stdout for the result line: the client logs with console.log/info too.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

export const api = anyApi;
export { ConvexError, ConvexHttpClient };

export const url = process.env.SYNCLINE_URL ?? process.argv[2];
if (!url) {
  writeResultLine(JSON.stringify({ ok: false, error: "set SYNCLINE_URL" }));
  process.exit(1);
}

export const unique = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const clients = [];

/** A WebSocket ConvexClient (closed when the scenario ends). */
export function wsClient(options = {}, address = url) {
  const client = new ConvexClient(address, {
    webSocketConstructor: WebSocket,
    unsavedChangesWarning: false,
    ...options,
  });
  clients.push(client);
  return client;
}

export function httpClient(address = url, options = {}) {
  return new ConvexHttpClient(address, options);
}

export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a rejection naming `label` after `ms`. */
export function within(ms, promise, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `predicate` every 5 ms until it is truthy; reject naming `label` after `ms`. */
export async function waitUntil(predicate, ms, label) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await sleep(5);
  }
}

/** Progress marker on stderr for a test driving this script step by step. */
export function phase(name) {
  process.stderr.write(`@@phase ${name}\n`);
}

let stdinLines;
/** Resolve when the test writes the line `name` on our stdin. */
export function command(name, ms) {
  if (stdinLines === undefined) {
    stdinLines = { seen: [], waiters: [] };
    process.stdin.setEncoding("utf8");
    let buffer = "";
    process.stdin.on("data", (chunk) => {
      buffer += chunk;
      let i;
      while ((i = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 1);
        stdinLines.seen.push(line);
        stdinLines.waiters = stdinLines.waiters.filter((w) =>
          w.name === line ? (w.resolve(), false) : true,
        );
      }
    });
  }
  if (stdinLines.seen.includes(name)) return Promise.resolve();
  const d = deferred();
  stdinLines.waiters.push({ name, resolve: d.resolve });
  return within(ms, d.promise, `the command "${name}" on stdin`);
}

/**
 * Subscribe with onUpdate and keep every value. `waitFor(pred, ms, label)`
 * resolves with the first value (already seen or future) that satisfies pred.
 */
export function watch(client, ref, args = {}) {
  const values = [];
  const errors = [];
  let waiters = [];
  const notify = () => {
    waiters = waiters.filter((w) => {
      const hit = w.fromErrors ? errors.find(w.pred) : values.find(w.pred);
      if (hit !== undefined) w.resolve(hit);
      return hit === undefined;
    });
  };
  const unsubscribe = client.onUpdate(
    ref,
    args,
    (value) => {
      values.push(value);
      notify();
    },
    (error) => {
      errors.push(error);
      notify();
    },
  );
  const waitFor = (pred, ms, label, fromErrors = false) => {
    const d = deferred();
    waiters.push({ pred, resolve: d.resolve, fromErrors });
    notify();
    return within(ms, d.promise, label);
  };
  return {
    values,
    errors,
    unsubscribe,
    current: () => unsubscribe.getCurrentValue(),
    waitFor,
    waitForError: (pred, ms, label) => waitFor(pred, ms, label, true),
  };
}

/** A JSON-safe description of a Convex value (bigint, ArrayBuffer, NaN, -0 ...). */
export function describe(value) {
  if (typeof value === "bigint") return { bigint: value.toString() };
  if (value instanceof ArrayBuffer) return { bytes: Buffer.from(value).toString("hex") };
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN";
    if (value === Infinity) return "Infinity";
    if (value === -Infinity) return "-Infinity";
    if (Object.is(value, -0)) return "-0";
    return value;
  }
  if (Array.isArray(value)) return value.map(describe);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
  }
  return value === undefined ? "undefined" : value;
}

/** Deep equality of two values as `describe` sees them (object key order ignored). */
export function same(a, b) {
  const canon = (v) => {
    if (Array.isArray(v)) return v.map(canon);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canon(v[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(canon(describe(a))) === JSON.stringify(canon(describe(b)));
}

export function errorInfo(error) {
  if (!(error instanceof Error)) return { notAnError: describe(error) };
  return {
    name: error.name,
    isConvexError: error instanceof ConvexError,
    message: error.message,
    data: error instanceof ConvexError ? describe(error.data) : undefined,
  };
}

/** Resolve with the rejection of `promise` (or fail if it resolves). */
export async function rejectionOf(promise, ms, label) {
  try {
    const value = await within(ms, promise, label);
    return { resolved: describe(value) };
  } catch (error) {
    return errorInfo(error);
  }
}

export async function run(name, body, { timeoutMs = 15000 } = {}) {
  const checks = {};
  const check = (label, ok, detail) => {
    checks[label] = detail === undefined ? { ok: !!ok } : { ok: !!ok, detail: describe(detail) };
    return !!ok;
  };
  let finished = false;
  const finish = async (results, error) => {
    if (finished) return;
    finished = true;
    const ok = error === undefined && Object.values(checks).every((c) => c.ok);
    writeResultLine(
      JSON.stringify({ scenario: name, ok, checks, results: describe(results ?? {}), error }),
    );
    await Promise.race([Promise.allSettled(clients.map((c) => c.close())), sleep(1000)]);
    process.exit(ok ? 0 : 1);
  };
  process.on("unhandledRejection", (reason) => {
    check(`no unhandled rejection (${String(reason).slice(0, 80)})`, false, String(reason));
  });
  const timer = setTimeout(
    () => finish(undefined, `scenario timed out after ${timeoutMs} ms`),
    timeoutMs,
  );
  try {
    const results = await body(check);
    clearTimeout(timer);
    await finish(results);
  } catch (error) {
    clearTimeout(timer);
    await finish(undefined, `${error?.stack ?? error}`);
  }
}
