// A paginated query (onPaginatedUpdate_experimental, the machinery behind
// usePaginatedQuery): first page, loadMore until exhausted, then live
// inserts/deletes keep the loaded pages contiguous.
import { api, run, unique, waitUntil, within, wsClient } from "./lib.mjs";

await run("pagination", async (check) => {
  const client = wsClient();
  const tag = `pg-${unique}`;
  const ids = await within(5000, client.mutation(api.items.add_many, { tag, n: 7 }), "the inserts");
  let latest;
  const errors = [];
  const updates = [];
  client.onPaginatedUpdate_experimental(
    api.items.page,
    { tag },
    { initialNumItems: 3 },
    (result) => {
      latest = result;
      updates.push({ n: result.results.map((d) => d.n), status: result.status });
    },
    (error) => errors.push(String(error)),
  );
  const ns = () => latest?.results.map((d) => d.n);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  await waitUntil(() => latest?.status === "CanLoadMore", 5000, "the first page");
  check("first page", same(ns(), [6, 5, 4]), updates);
  check("loadMore starts loading", latest.loadMore(3) === true);
  await waitUntil(
    () => latest.results.length === 6 && latest.status === "CanLoadMore",
    5000,
    "the second page",
  );
  check("two pages", same(ns(), [6, 5, 4, 3, 2, 1]), updates);
  latest.loadMore(3);
  await waitUntil(() => latest.status === "Exhausted", 5000, "the last page");
  check("all pages", same(ns(), [6, 5, 4, 3, 2, 1, 0]), updates);

  await within(5000, client.mutation(api.items.add_one, { tag, n: 100 }), "an insert");
  check(
    "an insert shows up at the top when the mutation resolves",
    same(ns(), [100, 6, 5, 4, 3, 2, 1, 0]),
    updates.slice(-2),
  );
  await within(5000, client.mutation(api.items.remove, { id: ids[3] }), "a delete");
  check(
    "a delete in the middle page disappears",
    same(ns(), [100, 6, 5, 4, 2, 1, 0]),
    updates.slice(-2),
  );
  check("status stays Exhausted", latest.status === "Exhausted", latest.status);
  check("no errors", errors.length === 0, errors);

  const once = await within(
    5000,
    client.query(api.items.page, { tag, paginationOpts: { numItems: 2, cursor: null } }),
    "a one-shot page",
  );
  check(
    "one-shot page shape",
    once.page.length === 2 && once.isDone === false && typeof once.continueCursor === "string",
    once,
  );
  return { updates: updates.length };
});
