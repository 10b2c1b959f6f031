// ConvexHttpClient.consistentQuery (deprecated but public): POST /api/query_ts for a
// timestamp, then POST /api/query_at_ts with {path, format, args, ts} (protocol.md §7.1).
import { api, httpClient, run, unique, within } from "./lib.mjs";

await run("consistent_query", async (check) => {
  const client = httpClient();
  const title = `js-consistent-${unique}`;
  await within(5000, client.mutation(api.tasks.add, { title }), "the mutation");
  const first = await within(5000, client.consistentQuery(api.tasks.list, {}), "consistentQuery");
  check("consistentQuery sees the write", first[0]?.title === title, first[0]);
  // Later writes are not visible to queries at the client's fixed timestamp.
  await within(
    5000,
    httpClient().mutation(api.tasks.add, { title: `${title}-later` }),
    "a later write",
  );
  const second = await within(
    5000,
    client.consistentQuery(api.tasks.list, {}),
    "consistentQuery again",
  );
  check(
    "the same client keeps reading at its first timestamp",
    second[0]?.title === title,
    second[0],
  );
  return {};
});
