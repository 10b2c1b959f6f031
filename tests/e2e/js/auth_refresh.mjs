// Token changes on a live socket:
// (1) the fetcher returns a NEW token on the client's immediate forced refetch, for another
//     user: the server must accept the second Authenticate (identity version 2) and re-run
//     the identity query for the new user, without a reconnect;
// (2) a short-lived token expires while subscribed: on the next query update the server
//     sends AuthError (authUpdateAttempted: false) and closes; the client fetches a fresh
//     token, reconnects and carries on authenticated.
// Tokens come from the test in SYNCLINE_TOKENS (JSON): {a, b, short, long}; subjects
// "refresh-a", "refresh-b", "refresh-s" (short and long).
import { api, run, sleep, unique, waitUntil, watch, within, wsClient } from "./lib.mjs";

const tokens = JSON.parse(process.env.SYNCLINE_TOKENS);
const expOf = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString()).exp;

await run(
  "auth_refresh",
  async (check) => {
    // (1) identity switch on the same socket
    const client = wsClient();
    const me = watch(client, api.users.whoami, {});
    const fetches = [];
    const changes = [];
    client.setAuth(
      async ({ forceRefreshToken }) => {
        fetches.push(forceRefreshToken);
        return fetches.length === 1 ? tokens.a : tokens.b;
      },
      (ok) => changes.push(ok),
    );
    // The server may fold the query's first run and both Authenticates into one Transition,
    // so "refresh-a" need not be observed by the subscription.
    const b = await me.waitFor(
      (v) => v?.subject === "refresh-b",
      5000,
      "identity b after the refetch",
    );
    check("the second token's identity replaced the first", b.subject === "refresh-b");
    check(
      "no reconnect was needed",
      client.connectionState().connectionCount === 1,
      client.connectionState(),
    );
    check(
      "onChange reported true (and never false)",
      changes.includes(true) && !changes.includes(false),
      changes,
    );
    const viaAction = await within(
      5000,
      client.action(api.users.whoami_action, {}),
      "whoami_action",
    );
    check("actions run as the new identity", viaAction?.subject === "refresh-b", viaAction);

    // (2) expiry of a short-lived token
    const short = wsClient();
    const writer = wsClient();
    const shortFetches = [];
    const shortChanges = [];
    short.setAuth(
      async ({ forceRefreshToken }) => {
        shortFetches.push(forceRefreshToken);
        return shortFetches.length <= 2 ? tokens.short : tokens.long;
      },
      (ok) => shortChanges.push(ok),
    );
    const who = watch(short, api.users.whoami, {});
    const list = watch(short, api.tasks.list, {});
    await who.waitFor((v) => v?.subject === "refresh-s", 5000, "the short-lived identity");
    await list.waitFor(() => true, 5000, "the list");
    const waitMs = expOf(tokens.short) * 1000 - Date.now() + 300;
    await sleep(Math.max(0, waitMs));
    check("the short token has expired now", Date.now() / 1000 > expOf(tokens.short));
    check("only the short token was fetched so far", shortFetches.length === 2, shortFetches);

    const title = `js-expiry-${unique}`;
    await within(5000, writer.mutation(api.tasks.add, { title }), "the writer's mutation");
    await list.waitFor(
      (docs) => docs.some((d) => d.title === title),
      10000,
      "the update after re-authenticating",
    );
    await waitUntil(() => short.connectionState().isWebSocketConnected, 5000, "the reconnect");
    check(
      "the client fetched a fresh token after the AuthError",
      shortFetches.length >= 3,
      shortFetches,
    );
    check(
      "the client reconnected",
      short.connectionState().connectionCount >= 2,
      short.connectionState(),
    );
    const mine = await within(
      5000,
      short.mutation(api.users.add_mine, { title }),
      "a mutation with the fresh token",
    );
    check("mutations work with the fresh token", typeof mine === "string");
    const still = await within(5000, short.query(api.users.whoami, {}), "whoami after the refresh");
    check("still the same user", still?.subject === "refresh-s", still);
    check("never reported logged out", !shortChanges.includes(false), shortChanges);
    return { fetches, changes, shortFetches, shortChanges };
  },
  { timeoutMs: 25000 },
);
