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
    check(
      `after mutation ${i}: getCurrentValue() has the write`,
      current?.[0]?._id === id,
      current?.[0],
    );
    check(
      `after mutation ${i}: the onUpdate callback already saw it`,
      lastCallback?.[0]?._id === id,
    );
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
  check(
    "each batched mutation was visible when it resolved",
    visibleAtResolve.length === 3 && visibleAtResolve.every(Boolean),
    visibleAtResolve,
  );
  const order = list
    .current()
    .slice(0, 3)
    .map((d) => d._id);
  check(
    "batched mutations ran in the order sent",
    JSON.stringify(order) === JSON.stringify([...ids].reverse()),
    order,
  );

  // A failed mutation rejects, changes nothing, and the connection stays usable.
  const before = JSON.stringify(list.current());
  const failure = await rejectionOf(
    client.mutation(api.tasks.add, { title: "bad" }),
    5000,
    "the failing mutation",
  );
  check("a ConvexError mutation rejects with ConvexError", failure.isConvexError === true, failure);
  check("the failed mutation changed nothing", JSON.stringify(list.current()) === before);
  const afterId = await within(
    5000,
    client.mutation(api.tasks.add, { title: `js-ryw-after-${unique}` }),
    "a later mutation",
  );
  check(
    "a later mutation still resolves with its write visible",
    list.current()?.[0]?._id === afterId,
  );

  // A one-shot query after a mutation sees it as well.
  const once = await within(5000, client.query(api.tasks.list, {}), "a one-shot query");
  check("one-shot query sees the latest write", once[0]._id === afterId);

  // An optimistic update shows at once and is replaced by the real write when the mutation
  // resolves: the Transition that completes it must already contain the write.
  const optimisticTitle = `js-ryw-optimistic-${unique}`;
  const pending = client.mutation(
    api.tasks.add,
    { title: optimisticTitle },
    {
      optimisticUpdate: (store, args) => {
        const current = store.getQuery(api.tasks.list, {});
        if (current !== undefined) {
          store.setQuery(api.tasks.list, {}, [
            { _id: "optimistic", _creationTime: 0, title: args.title },
            ...current,
          ]);
        }
      },
    },
  );
  const shownAtOnce = list.current()?.[0]?._id;
  const realId = await within(5000, pending, "the optimistic mutation");
  const settled = list.current();
  check("the optimistic value shows at once", shownAtOnce === "optimistic", shownAtOnce);
  check(
    "it is replaced by the real document, without duplicates",
    settled[0]?._id === realId && settled.filter((d) => d.title === optimisticTitle).length === 1,
    settled.slice(0, 3),
  );

  // Many subscriptions on one client: each gets its first result.
  const many = Array.from({ length: 100 }, (_, i) =>
    watch(client, api.values.describe, { value: i }),
  );
  await within(
    10000,
    Promise.all(many.map((w) => w.waitFor(() => true, 10000, "a result"))),
    "100 subscriptions",
  );
  check(
    "100 subscriptions all got a result",
    many.every((w) => w.values[0] === "float"),
  );
  return { callbacks: list.values.length, ConvexError: typeof ConvexError };
});
