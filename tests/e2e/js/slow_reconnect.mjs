// A client the server drops for leaving its responses unread (ClientTooSlow), driven by the test.
// The client talks to the server through the test's proxy (SYNCLINE_URL is the proxy):
//   we subscribe and print "@@phase subscribed" -> the test stops passing server-to-client
//   bytes and writes "paused"; we send mutations with large results and print "@@phase sent"
//   -> the test waits until the server drops the connection, writes `slow-during-<tag>`
//   straight to the server, lets the bytes through again and writes "resumed".
// The client must reconnect, resync its subscription (it sees the write made while it was
// cut off), and settle every mutation exactly once with its result.
import { api, command, phase, run, watch, within, wsClient } from "./lib.mjs";

const tag = process.env.SYNCLINE_UNIQUE;
const COUNT = Number(process.env.SYNCLINE_MUTATIONS);
const SIZE = Number(process.env.SYNCLINE_RESULT_BYTES);

await run(
  "slow_reconnect",
  async (check) => {
    const client = wsClient();
    const list = watch(client, api.slow.titles, { prefix: `slow-${tag}` });
    await list.waitFor((titles) => Array.isArray(titles), 5000, "the first result");
    check("connected once before the stall", client.connectionState().connectionCount === 1);
    phase("subscribed");

    await command("paused", 15000);
    const titles = Array.from({ length: COUNT }, (_, i) => `slow-${tag}-${i}`);
    const pending = titles.map((title) =>
      client.mutation(api.slow.add, { title, size: SIZE }),
    );
    phase("sent");

    await command("resumed", 40000);
    const during = `slow-${tag}-during`;
    const seen = await list.waitFor(
      (current) => current.includes(during) && titles.every((t) => current.includes(t)),
      20000,
      "every write after the reconnect",
    );
    const results = await within(20000, Promise.all(pending), "the mutations sent before the drop");
    check(
      "each mutation resolved with its own large result",
      results.every((r, i) => r.length === SIZE && r.endsWith(titles[i])),
      results.map((r) => [r.length, r.slice(-40)]),
    );
    const fresh = await within(5000, client.query(api.slow.titles, { prefix: `slow-${tag}` }), "a query");
    check(
      "each mutation ran exactly once",
      titles.every((t) => fresh.filter((f) => f === t).length === 1),
      fresh,
    );
    const state = client.connectionState();
    check(
      "the client reconnected",
      state.isWebSocketConnected && state.connectionCount >= 2,
      state,
    );
    const later = `slow-${tag}-later`;
    await within(5000, client.mutation(api.slow.add, { title: later, size: 10 }), "a later mutation");
    check("a mutation after the reconnect has its write visible", list.current().includes(later));
    return { connectionCount: state.connectionCount, seen: seen.length };
  },
  { timeoutMs: 90000 },
);
