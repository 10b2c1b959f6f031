// Read-modify-write increments of one counter from clients spread over several nodes
// of one PostgreSQL database (SYNCLINE_URLS, comma-separated): two WebSocket clients
// and one HTTP client per node. Every increment sees all earlier ones (serializable
// across nodes), and a subscriber on each node reaches the total.
import { api, httpClient, run, unique, watch, within, wsClient } from "./lib.mjs";

const urls = (process.env.SYNCLINE_URLS ?? "").split(",").filter(Boolean);

await run(
  "nodes counter",
  async (check) => {
    check("several nodes", urls.length >= 2, urls);
    const name = `counter-${unique}`;
    const watchers = urls.map((address) => watch(wsClient({}, address), api.counters.get, { name }));
    for (const watcher of watchers) await watcher.waitFor(() => true, 10000, "the first value");

    const writers = urls.flatMap((address) => [
      wsClient({}, address),
      wsClient({}, address),
      httpClient(address),
    ]);
    const perWriter = 10;
    const total = writers.length * perWriter;
    const returned = await within(
      40000,
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
    for (const [i, watcher] of watchers.entries()) {
      await watcher.waitFor((v) => v === total, 10000, `the total on node ${i}`);
    }
    check("a subscriber on every node saw the total", true, total);
    return { total, nodes: urls.length };
  },
  { timeoutMs: 60000 },
);
