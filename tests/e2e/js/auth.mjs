// (c) setAuth(fetchToken, onChange) with a JWT from the test: onChange(true),
// and queries/actions see the identity. Also: a rejected token gives
// onChange(false) and the client carries on unauthenticated.
import { api, run, sleep, watch, within, wsClient } from "./lib.mjs";

const token = process.env.SYNCLINE_TOKEN;
const subject = process.env.SYNCLINE_SUBJECT;

await run("auth", async (check) => {
  const client = wsClient();
  const me = watch(client, api.users.whoami, {});
  const anonymous = await me.waitFor(() => true, 5000, "the anonymous result");
  check("before setAuth whoami is null", anonymous === null, anonymous);

  const fetches = [];
  const changes = [];
  client.setAuth(
    async ({ forceRefreshToken }) => {
      fetches.push(forceRefreshToken);
      return token;
    },
    (isAuthenticated) => changes.push(isAuthenticated),
  );
  const identity = await me.waitFor((v) => v?.subject === subject, 5000, "the identity in whoami");
  await within(
    5000,
    (async () => {
      while (!changes.includes(true)) await sleep(10);
    })(),
    "onChange(true)",
  );
  check("onChange reported true", changes[0] === true, changes);
  check("whoami has the token's subject", identity.subject === subject, identity);
  check(
    "tokenIdentifier is issuer|subject",
    identity.tokenIdentifier === `${identity.issuer}|${subject}`,
    identity,
  );
  check("the token fetcher was called", fetches.length >= 1, fetches);

  const viaAction = await within(5000, client.action(api.users.whoami_action, {}), "the action");
  check("an action sees the identity", viaAction?.subject === subject, viaAction);
  const viaQuery = await within(5000, client.query(api.users.whoami, {}), "a one-shot query");
  check("a one-shot query sees the identity", viaQuery?.subject === subject, viaQuery);

  // Logging out re-runs the subscription as anonymous.
  const count = me.values.length;
  client.client.clearAuth();
  const loggedOut = await me.waitFor(
    (v, i) => v === null && i >= count,
    5000,
    "null after clearAuth",
  );
  check("after clearAuth whoami is null again", loggedOut === null);

  // A token the server rejects.
  const other = wsClient();
  const badChanges = [];
  other.setAuth(
    async () => "not-a-valid-jwt",
    (isAuthenticated) => badChanges.push(isAuthenticated),
  );
  await within(
    10000,
    (async () => {
      while (!badChanges.includes(false)) await sleep(10);
    })(),
    "onChange(false)",
  );
  check("a rejected token reports onChange(false)", badChanges[0] === false, badChanges);
  const afterReject = await within(
    8000,
    other.query(api.users.whoami, {}),
    "a query after the rejected token",
  );
  check("the client carries on unauthenticated", afterReject === null, afterReject);

  // Admin key on the WebSocket, acting as a user (the dashboard does this).
  const admin = wsClient();
  admin.client.setAdminAuth(process.env.SYNCLINE_ADMIN_KEY, {
    subject: "ws-acted",
    issuer: "https://issuer.test",
  });
  const acted = await watch(admin, api.users.whoami, {}).waitFor(
    (v) => v?.subject === "ws-acted",
    5000,
    "whoami acting as a user",
  );
  check(
    "admin acting as a user over the WebSocket",
    acted.tokenIdentifier === "https://issuer.test|ws-acted",
    acted,
  );
  const plainAdmin = wsClient();
  plainAdmin.client.setAdminAuth(process.env.SYNCLINE_ADMIN_KEY);
  const adminCount = await within(
    5000,
    plainAdmin.query("tasks:count", {}),
    "an internal query as admin",
  );
  check(
    "admin runs internal queries over the WebSocket",
    typeof adminCount === "bigint",
    adminCount,
  );
  return { changes, fetches, badChanges };
});
