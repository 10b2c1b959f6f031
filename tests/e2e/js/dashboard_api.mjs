// The web dashboard's system functions through the official npm client, as the dashboard
// calls them: an admin ConvexClient (live) and ConvexHttpClient; other callers are refused.
import { httpClient, rejectionOf, run, watch, within, wsClient } from "./lib.mjs";

const key = process.env.SYNCLINE_ADMIN_KEY;
const system = (name) => `_system/dashboard/${name}`;
const FIRST = { numItems: 50, cursor: null };

await run("dashboard_api", async (check) => {
  const admin = wsClient();
  admin.setAdminAuth(key);
  const tables = watch(admin, system("data:tables"), {});
  const initial = await tables.waitFor((v) => Array.isArray(v), 5000, "the tables");
  check(
    "data:tables lists the schema's tables",
    initial.map((t) => t.name).join(",") === "empty,tasks",
    initial,
  );

  const http = httpClient();
  http.setAdminAuth(key);
  const id = await within(
    5000,
    http.mutation(system("data:insert"), {
      table: "notes",
      document: { big: 5n, raw: new Uint8Array([1, 2]).buffer, text: "hi" },
    }),
    "data:insert",
  );
  check("data:insert returns an id", typeof id === "string", id);
  const live = await tables.waitFor(
    (v) => v.some((t) => t.name === "notes"),
    5000,
    "the new table in the live list",
  );
  check("the live list shows the new table", live.find((t) => t.name === "notes")?.count === 1);

  const page = watch(admin, system("data:page"), { table: "notes", paginationOpts: FIRST });
  const first = await page.waitFor((v) => v?.page?.length === 1, 5000, "the page");
  const doc = first.page[0];
  check("an int64 arrives as a bigint", doc.big === 5n, doc);
  check(
    "bytes arrive as an ArrayBuffer",
    doc.raw instanceof ArrayBuffer && doc.raw.byteLength === 2,
  );
  await within(
    5000,
    http.mutation(system("data:replace"), { id, document: { ...doc, text: "edited" } }),
    "data:replace",
  );
  await page.waitFor((v) => v.page[0]?.text === "edited", 5000, "the edit on the live page");
  check("an edit reaches the live page", true);

  const refused = await rejectionOf(
    http.mutation(system("data:insert"), { table: "tasks", document: { title: 1 } }),
    5000,
    "a document the schema refuses",
  );
  check(
    "a schema violation is a ConvexError with its code",
    refused.isConvexError && refused.data?.code === "SchemaValidationError",
    refused,
  );

  const secret = watch(admin, "tasks:secret", {});
  const value = await secret.waitFor((v) => v !== undefined, 5000, "an internal query");
  check("an admin subscribes to an internal query", value === "internal only", value);

  const stranger = wsClient();
  const hidden = await rejectionOf(
    stranger.query(system("env:list"), {}),
    5000,
    "a system query without the key",
  );
  check(
    "a client without the key is told the function does not exist",
    /Could not find public function for '_system\/dashboard\/env:list'/.test(hidden.message ?? ""),
    hidden,
  );
  const hiddenHttp = await rejectionOf(
    httpClient().query(system("env:list"), {}),
    5000,
    "a system query over HTTP without the key",
  );
  check(
    "so is an HTTP client without the key",
    /Could not find public function/.test(hiddenHttp.message ?? ""),
    hiddenHttp,
  );
  return {};
});
