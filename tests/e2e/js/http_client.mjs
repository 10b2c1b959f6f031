// (d) ConvexHttpClient: query, mutation, action, auth, and a trailing-slash URL.
import { api, httpClient, rejectionOf, run, unique, url, within } from "./lib.mjs";

const token = process.env.SYNCLINE_TOKEN;
const subject = process.env.SYNCLINE_SUBJECT;

await run("http_client", async (check) => {
  const client = httpClient();
  const title = `js-http-${unique}`;
  const id = await within(5000, client.mutation(api.tasks.add, { title }), "the mutation");
  check("mutation returns an id string", typeof id === "string" && id.length > 0, id);
  const docs = await within(5000, client.query(api.tasks.list, {}), "the query");
  check("query sees the write", docs[0]?._id === id && docs[0]?.title === title, docs[0]);
  check("_creationTime is a number", typeof docs[0]?._creationTime === "number");
  const doubled = await within(5000, client.action(api.tasks.double, { x: 21 }), "the action");
  check("action result", doubled === 42, doubled);

  // Deployment URL with a trailing slash: the client calls //api/query.
  const slashed = httpClient(url + "/");
  const again = await within(
    5000,
    slashed.query(api.tasks.list, {}),
    "query via a trailing-slash URL",
  );
  check("a trailing-slash deployment URL works", again[0]?._id === id);

  // Auth.
  check("anonymous whoami is null", (await client.query(api.users.whoami, {})) === null);
  const authed = httpClient(url, { auth: token });
  const me = await within(5000, authed.query(api.users.whoami, {}), "whoami with a token");
  check("whoami with a token", me?.subject === subject, me);
  const meAction = await within(5000, authed.action(api.users.whoami_action, {}), "whoami_action");
  check("an action with a token", meAction?.subject === subject, meAction);
  client.setAuth(token);
  check("setAuth works too", (await client.query(api.users.whoami, {}))?.subject === subject);
  client.clearAuth();
  check("clearAuth logs out", (await client.query(api.users.whoami, {})) === null);
  client.setAuth("not-a-valid-jwt");
  const rejected = await rejectionOf(client.query(api.users.whoami, {}), 5000, "a bad token");
  check(
    "a bad token is rejected with an error",
    rejected.name === "Error" && !rejected.isConvexError,
    rejected,
  );

  // Admin key (what the CLI and dashboard use): internal functions, /api/function, acting as a user.
  const admin = httpClient();
  admin.setAdminAuth(process.env.SYNCLINE_ADMIN_KEY);
  const count = await within(5000, admin.query("tasks:count", {}), "an internal query as admin");
  check("admin runs internal functions", typeof count === "bigint" && count >= 1n, count);
  const viaFunction = await within(
    5000,
    admin.function("tasks:count", undefined, {}),
    "/api/function",
  );
  check("admin /api/function", typeof viaFunction === "bigint", viaFunction);
  const anonymous = httpClient();
  const notAdmin = await rejectionOf(
    anonymous.function("tasks:count", undefined, {}),
    5000,
    "/api/function without the key",
  );
  check("/api/function needs the admin key", notAdmin.name === "Error", notAdmin);
  const internalAsUser = await rejectionOf(
    anonymous.query("tasks:count", {}),
    5000,
    "an internal query without the key",
  );
  check(
    "internal functions are hidden from clients",
    internalAsUser.message?.includes("Could not find public function"),
    internalAsUser,
  );
  const actingAs = httpClient();
  actingAs.setAdminAuth(process.env.SYNCLINE_ADMIN_KEY, {
    subject: "acted-user",
    issuer: "https://issuer.test",
    email: "acted@example.com",
  });
  const acted = await within(5000, actingAs.query(api.users.whoami, {}), "whoami acting as a user");
  check(
    "admin acting as a user",
    acted?.subject === "acted-user" && acted?.email === "acted@example.com",
    acted,
  );

  const itemId = await within(
    5000,
    anonymous.mutation(api.items.add_one, { tag: "x", n: 0 }),
    "an insert",
  );
  const removed = await within(
    5000,
    anonymous.mutation(api.items.remove, { id: itemId }),
    "a void mutation",
  );
  check("a mutation returning nothing resolves to null", removed === null, removed);
  return { rejected };
});
