// A server restart under a connected ConvexClient, driven by the test:
//   we print "@@phase subscribed" on stderr -> the test stops the server and writes "down";
//   we send a mutation while disconnected, print "@@phase queued" -> the test starts the
//   server again (same port, same data) and writes `js-after-<SYNCLINE_UNIQUE>` over HTTP.
// The client must reconnect, re-subscribe, send the queued mutation exactly once, and see both writes.
import { api, command, phase, run, watch, within, wsClient } from "./lib.mjs";

const tag = process.env.SYNCLINE_UNIQUE;

await run(
  "reconnect",
  async (check) => {
    const client = wsClient();
    const list = watch(client, api.tasks.list, {});
    const before = `js-before-${tag}`;
    const beforeId = await within(
      5000,
      client.mutation(api.tasks.add, { title: before }),
      "the first mutation",
    );
    await list.waitFor((docs) => docs[0]?._id === beforeId, 5000, "the first write");
    check(
      "connected once before the restart",
      client.connectionState().connectionCount === 1,
      client.connectionState(),
    );
    phase("subscribed");

    await command("down", 15000);
    const during = `js-during-${tag}`;
    const pending = client.mutation(api.tasks.add, { title: during });
    phase("queued");

    const after = `js-after-${tag}`;
    const seen = await list.waitFor(
      (docs) => docs.some((d) => d.title === during) && docs.some((d) => d.title === after),
      20000,
      "both writes after the restart",
    );
    const duringId = await within(5000, pending, "the mutation queued during the outage");
    check(
      "the queued mutation resolved with its write visible",
      list.current().some((d) => d._id === duringId),
    );
    check(
      "the old data is still there",
      seen.some((d) => d._id === beforeId),
    );
    const fresh = await within(5000, client.query(api.tasks.list, {}), "a one-shot query");
    check(
      "the queued mutation ran exactly once",
      fresh.filter((d) => d.title === during).length === 1,
      fresh.map((d) => d.title),
    );
    const state = client.connectionState();
    check(
      "the client reconnected",
      state.isWebSocketConnected && state.connectionCount >= 2,
      state,
    );
    const later = await within(
      5000,
      client.mutation(api.tasks.add, { title: `js-later-${tag}` }),
      "a later mutation",
    );
    check(
      "mutations after the reconnect resolve with the write visible",
      list.current()[0]?._id === later,
    );
    return { connectionCount: state.connectionCount, titles: fresh.map((d) => d.title) };
  },
  { timeoutMs: 40000 },
);
