// `syncline deploy` under 100 subscribed ConvexClients (one process), driven by the test:
//   we print "@@phase subscribed" once every client holds the old code's result -> the test
//   deploys new code (a changed function, a new field and a new index) and writes "deployed";
//   every client must receive the new code's result on the socket it had.
//   Then "@@phase updated" -> the test tries a deploy the data violates and writes "refused";
//   nothing may change: the clients keep the new result and still hold their first socket.
import { api, command, phase, run, sleep, waitUntil, watch, within, wsClient } from "./lib.mjs";

const CLIENTS = Number(process.env.SYNCLINE_CLIENTS ?? 100);

await run(
  "deploy",
  async (check) => {
    const clients = Array.from({ length: CLIENTS }, () => wsClient());
    const lists = clients.map((client) => watch(client, api.tasks.list, {}));
    await within(
      20000,
      Promise.all(lists.map((l) => l.waitFor((v) => v?.[0]?.startsWith("v1:"), 20000, "v1"))),
      "every client's first result",
    );
    phase("subscribed");

    await command("deployed", 30000);
    await within(
      20000,
      Promise.all(lists.map((l) => l.waitFor((v) => v?.[0]?.startsWith("v2:"), 20000, "v2"))),
      "every client's result from the new code",
    );
    const open = await within(5000, clients[0].query(api.tasks.open, {}), "the new query");
    check("the new query reads the new index", open === 1, open);
    const added = await within(
      5000,
      clients[1].mutation(api.tasks.add, { title: "after" }),
      "a mutation of the new code",
    );
    check("the new mutation writes the new field", typeof added === "string", added);
    await within(
      10000,
      Promise.all(lists.map((l) => l.waitFor((v) => v?.includes("v2:after"), 10000, "after"))),
      "every client sees the new write",
    );
    phase("updated");

    await command("refused", 30000);
    await sleep(300);
    const stale = lists.filter((l) => !l.current()?.includes("v2:after"));
    check("after a refused deploy every client holds the new code's result", stale.length === 0);
    check(
      "no subscription failed",
      lists.every((l) => l.errors.length === 0),
      lists.flatMap((l) => l.errors.map(String)).slice(0, 3),
    );
    await waitUntil(() => true, 10, "a tick");
    const states = clients.map((c) => c.connectionState());
    const reconnected = states.filter((s) => s.connectionCount !== 1 || !s.isWebSocketConnected);
    check(
      "no client disconnected (each is on its first socket)",
      reconnected.length === 0,
      reconnected.slice(0, 3),
    );
    return { clients: CLIENTS, updatesPerClient: lists[0].values.length };
  },
  { timeoutMs: 90000 },
);
