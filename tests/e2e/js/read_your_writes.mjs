// (b) `await client.mutation(...)` resolves only once the client's query
// subscriptions already reflect the write (read-your-writes).
import { ConvexError, api, rejectionOf, run, unique, watch, within, wsClient } from "./lib.mjs";

await run("read_your_writes", async (check) => {
  const client = wsClient();
  const list = watch(client, api.tasks.list, {});
  await list.waitFor(() => true, 5000, "the first result");

  for (let i = 0; i < 5; i++) {
    const title = `js-ryw-${unique}-${i}`;
    const id = await within(5000, client.mutation(api.tasks.add, { title }), `mutation ${i}`);
    const current = list.current();
    const lastCallback = list.values[list.values.length - 1];
    check(`after mutation ${i}: getCurrentValue() has the write`, current?.[0]?._id === id, current?.[0]);
    check(`after mutation ${i}: the onUpdate callback already saw it`, lastCallback?.[0]?._id === id);
  }

  // Mutations sent together resolve in order, each already visible when it resolves.
  const titles = [0, 1, 2].map((i) => `js-ryw-batch-${unique}-${i}`);
  const visibleAtResolve = [];
  const ids = await within(
    5000,
    Promise.all(
      titles.map((title) =>
        client.mutation(api.tasks.add, { title }).then((id) => {
          visibleAtResolve.push(list.current()?.some((d) => d._id === id) ?? false);
          return id;
        }),
      ),
    ),
    "the batch",
  );
  check("each batched mutation was visible when it resolved", visibleAtResolve.length === 3 && visibleAtResolve.every(Boolean), visibleAtResolve);
  const order = list.current().slice(0, 3).map((d) => d._id);
  check("batched mutations ran in the order sent", JSON.stringify(order) === JSON.stringify([...ids].reverse()), order);

  // A failed mutation rejects, changes nothing, and the connection stays usable.
  const before = JSON.stringify(list.current());
  const failure = await rejectionOf(client.mutation(api.tasks.add, { title: "bad" }), 5000, "the failing mutation");
  check("a ConvexError mutation rejects with ConvexError", failure.isConvexError === true, failure);
  check("the failed mutation changed nothing", JSON.stringify(list.current()) === before);
  const afterId = await within(5000, client.mutation(api.tasks.add, { title: `js-ryw-after-${unique}` }), "a later mutation");
  check("a later mutation still resolves with its write visible", list.current()?.[0]?._id === afterId);

  // A one-shot query after a mutation sees it as well.
  const once = await within(5000, client.query(api.tasks.list, {}), "a one-shot query");
  check("one-shot query sees the latest write", once[0]._id === afterId);
  return { callbacks: list.values.length, ConvexError: typeof ConvexError };
});
