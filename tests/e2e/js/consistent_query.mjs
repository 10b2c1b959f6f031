// ConvexHttpClient.consistentQuery (deprecated but public): POST /api/query_ts for a
// timestamp, then POST /api/query_at_ts with {path, format, args, ts} (protocol.md §7.1).
import { api, httpClient, run, unique, within } from "./lib.mjs";

await run("consistent_query", async (check) => {
  const client = httpClient();
  const title = `js-consistent-${unique}`;
  await within(5000, client.mutation(api.tasks.add, { title }), "the mutation");
  const first = await within(5000, client.consistentQuery(api.tasks.list, {}), "consistentQuery");
  check("consistentQuery sees the write", first[0]?.title === title, first[0]);
  // Syncline keeps only the newest snapshot: a read at an older timestamp is answered
  // only while nothing it reads has changed since; otherwise a clear error says so.
  await within(
    5000,
    httpClient().mutation(api.tasks.add, { title: `${title}-later` }),
    "a later write",
  );
  let error = null;
  try {
    await within(5000, client.consistentQuery(api.tasks.list, {}), "consistentQuery again");
  } catch (e) {
    error = String(e);
  }
  check("a read at a timestamp that is no longer current fails clearly", /TimestampTooOld/.test(error ?? ""), error);
  return {};
});
