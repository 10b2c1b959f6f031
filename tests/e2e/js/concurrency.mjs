// Concurrent read-modify-write mutations from several clients (4 WebSocket, 1 HTTP) on one
// counter: every increment sees the previous one (serializable), and a subscriber only
// ever sees the counter go up. Also: a function in a nested module (api.admin.stats).
import { api, httpClient, run, unique, watch, within, wsClient } from "./lib.mjs";

await run("concurrency", async (check) => {
  const name = `counter-${unique}`;
  const watcher = wsClient();
  const counter = watch(watcher, api.counters.get, { name });
  await counter.waitFor(() => true, 5000, "the first value");

  const writers = [wsClient(), wsClient(), wsClient(), wsClient(), httpClient()];
  const perWriter = 10;
  const total = writers.length * perWriter;
  const returned = await within(
    15000,
    Promise.all(
      writers.flatMap((w) =>
        Array.from({ length: perWriter }, () => w.mutation(api.counters.increment, { name })),
      ),
    ),
    "all increments",
  );
  const sorted = [...returned].sort((a, b) => a - b);
  check(
    "each increment saw all earlier ones",
    sorted.every((v, i) => v === i + 1),
    sorted,
  );
  await counter.waitFor((v) => v === total, 5000, "the final value");
  const seen = counter.values;
  check(
    "the subscriber never saw the counter go down",
    seen.every((v, i) => i === 0 || v >= seen[i - 1]),
    seen,
  );
  check("the final value", (await watcher.query(api.counters.get, { name })) === total);

  const nested = await within(
    5000,
    watcher.query(api.admin.stats.task_count, {}),
    "a nested module's query",
  );
  check("nested module path admin/stats:task_count", typeof nested === "number", nested);
  return { updatesSeen: seen.length };
});
