// (a) ConvexClient.onUpdate receives live updates when OTHER clients mutate.
import { api, httpClient, run, unique, url, watch, within, wsClient } from "./lib.mjs";

await run("live_updates", async (check) => {
  // The watcher's deployment URL ends in "/": it connects to ws://host//api/1.48.0/sync.
  const watcher = wsClient({}, url + "/");
  const writer = wsClient();
  const list = watch(watcher, api.tasks.list, {});
  const initial = await list.waitFor(() => true, 5000, "the first result");
  check("first result is an array", Array.isArray(initial), initial);

  // A write by another WebSocket client.
  const title = `js-live-${unique}`;
  const started = performance.now();
  const id = await within(5000, writer.mutation(api.tasks.add, { title }), "the mutation");
  const seen = await list.waitFor(
    (docs) => docs.some((d) => d.title === title),
    5000,
    "the update",
  );
  const latencyMs = performance.now() - started;
  check(
    "the update shows the new task first",
    seen[0]._id === id && seen[0].title === title,
    seen[0],
  );
  check("the update arrived within 1 s of the mutation starting", latencyMs < 1000, latencyMs);

  // A write over HTTP (ConvexHttpClient) also reaches the subscriber.
  const httpTitle = `js-live-http-${unique}`;
  const httpId = await within(
    5000,
    httpClient().mutation(api.tasks.add, { title: httpTitle }),
    "the HTTP mutation",
  );
  const seenHttp = await list.waitFor(
    (docs) => docs[0]?._id === httpId,
    5000,
    "the HTTP write's update",
  );
  check("the HTTP write shows up too", seenHttp[0].title === httpTitle);

  // A burst of writes: the subscriber converges to the final state, newest first.
  const burst = [0, 1, 2, 3, 4].map((i) => `js-burst-${unique}-${i}`);
  await Promise.all(burst.map((t) => writer.mutation(api.tasks.add, { title: t })));
  const final = await list.waitFor(
    (docs) => burst.every((t) => docs.some((d) => d.title === t)),
    5000,
    "the burst",
  );
  const order = final.map((d) => d.title).filter((t) => burst.includes(t));
  check(
    "burst writes appear in the order they were sent",
    JSON.stringify(order) === JSON.stringify([...burst].reverse()),
    order,
  );

  // Unsubscribed listeners hear nothing more.
  list.unsubscribe();
  const count = list.values.length;
  await within(
    5000,
    writer.mutation(api.tasks.add, { title: `js-after-unsub-${unique}` }),
    "a mutation",
  );
  await new Promise((r) => setTimeout(r, 200));
  check("no callbacks after unsubscribe", list.values.length === count);
  return { latencyMs, updates: list.values.length };
});
