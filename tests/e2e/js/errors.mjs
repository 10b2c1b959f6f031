// (e) ConvexError `data` reaches both clients (WebSocket and HTTP); plain
// errors are plain Errors and (in production) do not leak their message.
import {
  api,
  httpClient,
  describe,
  rejectionOf,
  run,
  same,
  unique,
  watch,
  wsClient,
} from "./lib.mjs";

await run("errors", async (check) => {
  const ws = wsClient();
  const http = httpClient();
  const data = { code: unique, n: 7n, raw: new Uint8Array([1, 2]).buffer, list: [1.5, null, true] };
  const results = {};

  for (const [name, client] of [
    ["ws", ws],
    ["http", http],
  ]) {
    const m = await rejectionOf(
      client.mutation(api.tasks.add, { title: "bad" }),
      5000,
      `${name} mutation`,
    );
    check(`${name}: mutation ConvexError`, m.isConvexError && same(m.data, { why: "bad" }), m);
    const q = await rejectionOf(
      client.query(api.failures.convex_error, { data }),
      5000,
      `${name} query`,
    );
    check(
      `${name}: query ConvexError data (bigint, bytes)`,
      q.isConvexError && same(q.data, describe(data)),
      q,
    );
    const a = await rejectionOf(
      client.action(api.failures.convex_error_action, { data: "a string" }),
      5000,
      `${name} action`,
    );
    check(
      `${name}: action ConvexError with string data`,
      a.isConvexError && a.data === "a string",
      a,
    );
    const p = await rejectionOf(
      client.query(api.failures.plain_error, {}),
      5000,
      `${name} plain error`,
    );
    check(`${name}: plain error is not a ConvexError`, p.name === "Error" && !p.isConvexError, p);
    check(
      `${name}: plain error message is redacted`,
      p.message.includes("Server Error") && !p.message.includes("secret-detail"),
      p,
    );
    const missing = await rejectionOf(
      client.query(api.tasks.nope, {}),
      5000,
      `${name} missing function`,
    );
    check(
      `${name}: missing function`,
      missing.message?.includes("Could not find public function"),
      missing,
    );
    results[name] = { m, q, a, p, missing };
  }
  check(
    "ws: message is decorated by the client",
    results.ws.m.message.startsWith("[CONVEX M(tasks:add)]"),
    results.ws.m.message,
  );

  // A subscription's ConvexError goes to the onError callback, with data.
  const sub = watch(ws, api.failures.convex_error, { data: { why: unique } });
  const subError = await sub.waitForError(() => true, 5000, "the subscription error");
  check("onUpdate onError gets the ConvexError data", subError.data?.why === unique, {
    name: subError.name,
    data: subError.data,
  });

  // A subscription that fails, then succeeds once the data it needs exists.
  const tag = `recover-${unique}`;
  const recovering = watch(ws, api.failures.fails_until_item, { tag });
  const first = await recovering.waitForError(() => true, 5000, "the first (failed) result");
  check("a failing subscription reports its ConvexError", first.data?.missing === tag, {
    name: first.name,
    data: first.data,
  });
  await ws.mutation(api.items.add_one, { tag, n: 1 });
  const recovered = await recovering.waitFor((v) => v === 1, 5000, "the recovered result");
  check("the subscription recovers when the data changes", recovered === 1, recovering.values);
  return results;
});
