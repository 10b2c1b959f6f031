// (f) int64 (BigInt), bytes (ArrayBuffer) and special floats round trip
// through a mutation and a query, on both clients.
import { api, describe, httpClient, run, same, unique, within, wsClient } from "./lib.mjs";

const value = () => ({
  int: 2n ** 62n + 1n,
  neg: -(2n ** 63n),
  bytes: new Uint8Array([...Array(256).keys()]).buffer,
  empty: new ArrayBuffer(0),
  nan: NaN,
  inf: Infinity,
  ninf: -Infinity,
  nzero: -0,
  float: 2.5,
  one: 1,
  nested: { list: [1n, new Uint8Array([120]).buffer, -1], s: unique },
  floats: {
    big: 1e300,
    tiny: 5e-324,
    max: Number.MAX_VALUE,
    above2to53: 2 ** 53 + 2,
    sum: 0.1 + 0.2,
  },
  text: "héllo ✓ 🚀 \u0000 \n end",
});

await run("values", async (check) => {
  const results = {};
  for (const [name, client] of [
    ["ws", wsClient()],
    ["http", httpClient()],
  ]) {
    const stored = await within(
      5000,
      client.mutation(api.values.store, { value: value() }),
      `${name} store`,
    );
    check(`${name}: mutation result round trips`, same(stored.value, value()), stored.value);
    check(
      `${name}: bigint type`,
      typeof stored.value.int === "bigint" && typeof stored.value.nested.list[0] === "bigint",
    );
    check(`${name}: ArrayBuffer type`, stored.value.bytes instanceof ArrayBuffer);
    const back = await within(5000, client.query(api.values.get, { id: stored.id }), `${name} get`);
    check(`${name}: query of the stored document round trips`, same(back, value()), back);
    const kinds = await within(
      5000,
      client.query(api.values.describe, { value: value() }),
      `${name} describe`,
    );
    check(
      `${name}: the server sees Int64/bytes/float`,
      kinds.int === "Int64" &&
        kinds.neg === "Int64" &&
        kinds.bytes === "bytes" &&
        kinds.empty === "bytes" &&
        kinds.one === "float" &&
        kinds.nzero === "float" &&
        kinds.nan === "float" &&
        kinds.nested.list[0] === "Int64",
      kinds,
    );
    const constants = await within(
      5000,
      client.query(api.values.constants, {}),
      `${name} constants`,
    );
    check(
      `${name}: server-made values`,
      same(constants, {
        min: { bigint: "-9223372036854775808" },
        max: { bigint: "9223372036854775807" },
        small: { bigint: "-2" },
        bytes: { bytes: Buffer.from([...Array(256).keys()]).toString("hex") },
        empty: { bytes: "" },
        nan: "NaN",
        inf: "Infinity",
        ninf: "-Infinity",
        nzero: "-0",
        float: 1.5,
      }),
      constants,
    );
    results[name] = { stored: stored.value, kinds };
  }
  return results;
});
