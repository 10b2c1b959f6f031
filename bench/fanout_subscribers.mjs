// Subscriber side of the fan-out measurements (bench/sync.py, bench/postgres.py), in Node (its WebSocket
// client decodes frames far more cheaply than Python's, so on a small machine the
// clients steal less CPU from the server being measured).
//
// Usage: NODE_MODULES=<dir holding ws> node fanout_subscribers.mjs WS_URL[,WS_URL...] COUNT
// (with several URLs the connections are dealt round-robin over them: one
// subscriber set spread over several nodes, as bench/postgres.py uses it)
// Protocol with the parent on stdin/stdout, one JSON value per line:
//   -> "ready" once all COUNT connections have their first query result
//   <- a number N: report when every connection has seen N as the query's value
//   -> {"value": N, "doneAt": <epoch ms, fractional>}
//   <- null: close everything and exit
import { createInterface } from "node:readline";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { createRequire } from "node:module";

// `ws` comes from the e2e suite's node_modules (tests/e2e/js), named by the parent.
const WebSocket = createRequire(`${process.env.NODE_MODULES}/`)("ws");

const [urlList, countText] = process.argv.slice(2);
const urls = urlList.split(",");
const count = Number(countText);
const conns = [];
let target = null;
let pending = 0;

function now() {
  return performance.timeOrigin + performance.now();
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const conn = { ws, value: undefined, ready: false };
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "Connect", sessionId: randomUUID(), connectionCount: 0,
        lastCloseReason: "InitialConnect", clientTs: 0 }));
      ws.send(JSON.stringify({ type: "ModifyQuerySet", baseVersion: 0, newVersion: 1,
        modifications: [{ type: "Add", queryId: 1, udfPath: "bench:latest", args: [{}] }] }));
    });
    ws.on("message", (data) => {
      const msg = JSON.parse(data);
      if (msg.type !== "Transition") return;
      for (const m of msg.modifications) {
        if (m.type === "QueryUpdated") conn.value = m.value;
      }
      if (!conn.ready) {
        conn.ready = true;
        resolve(conn);
      }
      if (target !== null && conn.value === target && !conn.counted) {
        conn.counted = true;
        pending -= 1;
        if (pending === 0) {
          process.stdout.write(JSON.stringify({ value: target, doneAt: now() }) + "\n");
          target = null;
        }
      }
    });
    ws.on("error", reject);
  });
}

for (let i = 0; i < count; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(count, i + 100); j++) batch.push(open(urls[j % urls.length]));
  conns.push(...(await Promise.all(batch)));
}
process.stdout.write(JSON.stringify("ready") + "\n");

for await (const line of createInterface({ input: process.stdin })) {
  const value = JSON.parse(line);
  if (value === null) break;
  for (const conn of conns) conn.counted = false;
  target = value;
  pending = conns.length;
  process.stdout.write(JSON.stringify("armed") + "\n");
}
for (const conn of conns) conn.ws.close();
process.exit(0);
