"""Randomized consistency of live queries under concurrent writers, on a real server.

Subscribers hold 3 to 5 queries each (counts, member lists, single documents,
sums) over one shared table and change their query sets now and then, while
writers run random mutations concurrently. Every mutation returns exactly
what it wrote, so the client side keeps a log of (commit ts, effects).

Afterwards the log is replayed in ts order, which gives the table — and so
every query's value — at any ts. Each Transition a client accepted must:

1. chain exactly (its start is the previous end; checked on receipt),
2. have a ts no lower than the previous one,
3. leave the client's results equal to the queries evaluated at its
   ``endVersion.ts``, for exactly the queries the client had subscribed to
   as of its ``endVersion.querySet``,

and a writer's first Transition after a MutationResponse must reach the
mutation's ts. At the end every client is brought to the latest ts and must
agree with the database itself.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from server.conftest import AsyncWs, LiveServer, add, check_server_message
from syncline.sync.protocol import decode_ts

SEED = 20261121
WRITE_SECONDS = 3.0
SUBSCRIBERS = 4
WRITERS = 3
GROUPS = ("red", "green", "blue")

FILES = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "items": define_table({"group": v.string(), "value": v.float64()})
                .index("by_group", ["group"]),
        })
    """,
    "items.py": """
        from syncline import ConvexError, mutation, query, v


        def _group(ctx, group):
            return ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", group))


        def _effect(id, doc):
            return {"id": id, "doc": None if doc is None else
                    {"group": doc["group"], "value": doc["value"]}}


        @query(args={"group": v.string()})
        def count(ctx, group):
            return len(_group(ctx, group).collect())


        @query(args={"group": v.string()})
        def members(ctx, group):
            return sorted([d["_id"], d["value"]] for d in _group(ctx, group).collect())


        @query(args={"group": v.string()})
        def group_sum(ctx, group):
            return sum(d["value"] for d in _group(ctx, group))


        @query(args={"id": v.id("items")})
        def get(ctx, id):
            doc = ctx.db.get(id)
            return None if doc is None else {"group": doc["group"], "value": doc["value"]}


        @query
        def total(ctx):
            return sum(d["value"] for d in ctx.db.query("items").collect())


        @mutation(args={"group": v.string(), "value": v.float64()})
        def insert(ctx, group, value):
            doc = {"group": group, "value": value}
            return [_effect(ctx.db.insert("items", doc), doc)]


        @mutation(args={"id": v.id("items"), "value": v.float64()})
        def set_value(ctx, id, value):
            doc = ctx.db.get(id)
            if doc is None:
                return []
            ctx.db.patch(id, {"value": value})
            return [_effect(id, {**doc, "value": value})]


        @mutation(args={"id": v.id("items"), "group": v.string()})
        def move(ctx, id, group):
            doc = ctx.db.get(id)
            if doc is None:
                return []
            ctx.db.patch(id, {"group": group})
            return [_effect(id, {**doc, "group": group})]


        @mutation(args={"id": v.id("items")})
        def remove(ctx, id):
            if ctx.db.get(id) is None:
                return []
            ctx.db.delete(id)
            return [_effect(id, None)]


        @mutation(args={"a": v.id("items"), "b": v.id("items"), "amount": v.float64()})
        def transfer(ctx, a, b, amount):
            # Two writes in one transaction: `total` must never see half of it.
            da, db = ctx.db.get(a), ctx.db.get(b)
            if da is None or db is None:
                return []
            ctx.db.patch(a, {"value": da["value"] - amount})
            ctx.db.patch(b, {"value": db["value"] + amount})
            return [_effect(a, {**da, "value": da["value"] - amount}),
                    _effect(b, {**db, "value": db["value"] + amount})]


        @mutation(args={"group": v.string()})
        def insert_then_fail(ctx, group):
            ctx.db.insert("items", {"group": group, "value": 1000.0})
            raise ConvexError("rolled back")
    """,
}

Query = tuple[str, dict[str, Any]]
State = dict[str, dict[str, Any]]


def evaluate(query: Query, state: State) -> Any:
    """A query's value over ``state`` (id -> {group, value}), computed client-side."""
    path, args = query
    if path == "items:count":
        return float(sum(1 for d in state.values() if d["group"] == args["group"]))
    if path == "items:members":
        return sorted([i, d["value"]] for i, d in state.items() if d["group"] == args["group"])
    if path == "items:group_sum":
        return float(sum(d["value"] for d in state.values() if d["group"] == args["group"]))
    if path == "items:get":
        doc = state.get(args["id"])
        return None if doc is None else dict(doc)
    assert path == "items:total", path
    return float(sum(d["value"] for d in state.values()))


@dataclass
class Snapshot:
    """A client's results right after it applied one Transition."""

    who: str
    index: int
    ts: int
    values: dict[int, Any]


@dataclass
class Client:
    """A connection with a reader task that applies every frame as it arrives."""

    name: str
    ws: AsyncWs
    queries: dict[int, Query] = field(default_factory=dict)
    #: query set version -> the query ids subscribed as of that version
    active_at: dict[int, frozenset[int]] = field(default_factory=lambda: {0: frozenset()})
    snapshots: list[Snapshot] = field(default_factory=list)
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    #: requestId -> ts of a success whose follow-up Transition has not arrived yet
    awaiting_transition: dict[int, int] = field(default_factory=dict)
    next_query_id: int = 0
    reader: asyncio.Task[None] | None = None
    problems: list[str] = field(default_factory=list)

    async def start(self) -> None:
        await self.ws.connect(str(uuid.uuid4()))
        self.reader = asyncio.create_task(self._read(), name=f"reader {self.name}")

    async def _read(self) -> None:
        try:
            await self._read_frames()
        except Exception as exc:
            self.problems.append(f"{self.name}: {exc!r}")
            raise

    async def _read_frames(self) -> None:
        async for raw in self.ws.connection:
            msg = json.loads(raw)
            check_server_message(msg)
            kind = msg["type"]
            if kind == "Transition":
                self._on_transition(msg)
            elif kind == "MutationResponse":
                if msg["success"]:
                    self.awaiting_transition[msg["requestId"]] = decode_ts(msg["ts"])
                self.pending.pop(msg["requestId"]).set_result(msg)
            elif kind != "Ping":
                self.problems.append(f"unexpected message {msg}")

    def _on_transition(self, msg: dict[str, Any]) -> None:
        state = self.ws.state
        state.apply(msg)  # (1) the chain, and ts never going back (2)
        end = msg["endVersion"]
        ts = decode_ts(end["ts"])
        expected_ids = self.active_at[end["querySet"]]
        if set(state.results) != expected_ids:
            self.problems.append(
                f"{self.name}: results for {sorted(state.results)} at querySet "
                f"{end['querySet']}, expected {sorted(expected_ids)}"
            )
        for query_id, result in state.results.items():
            if result[0] != "ok":
                self.problems.append(f"{self.name}: query {query_id} failed: {result}")
        # Read your writes: the first Transition after a response reaches its ts.
        for request_id, mutation_ts in list(self.awaiting_transition.items()):
            if ts < mutation_ts:
                self.problems.append(
                    f"{self.name}: Transition to ts {ts} after the response of mutation "
                    f"{request_id} committed at {mutation_ts}"
                )
            del self.awaiting_transition[request_id]
        values = {qid: result[1] for qid, result in state.results.items()}
        self.snapshots.append(Snapshot(self.name, len(self.snapshots), ts, values))

    async def change_queries(self, adds: list[Query], removes: list[int]) -> None:
        modifications = []
        for query_id in removes:
            modifications.append({"type": "Remove", "queryId": query_id})
        active = set(self.active_at[self.ws.query_set])
        active.difference_update(removes)
        for query in adds:
            query_id = self.next_query_id
            self.next_query_id += 1
            self.queries[query_id] = query
            modifications.append(add(query_id, *query))
            active.add(query_id)
        self.active_at[self.ws.query_set + 1] = frozenset(active)
        await self.ws.modify(*modifications)

    def current(self) -> set[int]:
        return set(self.active_at[self.ws.query_set])

    async def mutate(self, path: str, args: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.ws.next_request] = future
        await self.ws.mutation(path, args)
        return future

    async def stop(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


class World:
    """What the writers know: the commit log and the ids that may exist."""

    def __init__(self) -> None:
        self.log: list[tuple[int, list[dict[str, Any]]]] = []
        self.ids: list[str] = []
        self.failures = 0

    def record(self, response: dict[str, Any]) -> None:
        if not response["success"]:
            assert response["ts"] is None
            assert response["errorData"] == "rolled back", response
            self.failures += 1
            return
        effects = response["result"]
        self.log.append((decode_ts(response["ts"]), effects))
        for effect in effects:
            if effect["doc"] is not None and effect["id"] not in self.ids:
                self.ids.append(effect["id"])

    def random_query(self, rng: random.Random) -> Query:
        kind = rng.choice(["count", "members", "group_sum", "get", "get", "total"])
        if kind == "total":
            return ("items:total", {})
        if kind == "get":
            return ("items:get", {"id": rng.choice(self.ids)})
        return (f"items:{kind}", {"group": rng.choice(GROUPS)})

    def random_mutation(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        roll = rng.random()
        value = float(rng.randint(0, 50))
        if roll < 0.25 or len(self.ids) < 2:
            return "items:insert", {"group": rng.choice(GROUPS), "value": value}
        if roll < 0.45:
            return "items:set_value", {"id": rng.choice(self.ids), "value": value}
        if roll < 0.6:
            return "items:move", {"id": rng.choice(self.ids), "group": rng.choice(GROUPS)}
        if roll < 0.7:
            return "items:remove", {"id": rng.choice(self.ids)}
        if roll < 0.95:
            a, b = rng.sample(self.ids, 2)
            return "items:transfer", {"a": a, "b": b, "amount": float(rng.randint(1, 10))}
        return "items:insert_then_fail", {"group": rng.choice(GROUPS)}

    def states_at(self, tss: list[int]) -> dict[int, State]:
        """The table as of each ts in ``tss`` (replaying the log in ts order)."""
        log = sorted(self.log, key=lambda entry: entry[0])
        commit_tss = [ts for ts, _ in log]
        assert len(set(commit_tss)) == len(commit_tss), "two mutations share a commit ts"
        state: State = {}
        out: dict[int, State] = {}
        applied = 0
        for ts in sorted(set(tss)):
            upto = bisect.bisect_right(commit_tss, ts)
            for _, effects in log[applied:upto]:
                for effect in effects:
                    if effect["doc"] is None:
                        state.pop(effect["id"], None)
                    else:
                        state[effect["id"]] = effect["doc"]
            applied = upto
            out[ts] = {i: dict(d) for i, d in state.items()}
        return out


async def writer(client: Client, world: World, rng: random.Random, until: float) -> int:
    loop = asyncio.get_running_loop()
    count = 0
    while loop.time() < until:
        # Pipeline a few at a time: one connection's mutations run in order.
        futures = [
            await client.mutate(*world.random_mutation(rng)) for _ in range(rng.randint(1, 3))
        ]
        responses = await asyncio.wait_for(asyncio.gather(*futures), 10)
        previous = 0
        for response in responses:
            world.record(response)
            if response["success"]:
                ts = decode_ts(response["ts"])
                assert ts > previous, "pipelined mutations committed out of order"
                previous = ts
            count += 1
    return count


async def subscriber(client: Client, world: World, rng: random.Random, until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        current = sorted(client.current())
        if len(current) > 3 and rng.random() < 0.5:
            await client.change_queries([], [rng.choice(current)])
        elif len(current) < 5:
            await client.change_queries([world.random_query(rng)], [])
        else:
            await client.change_queries([world.random_query(rng)], [rng.choice(current)])


def caught_up(client: Client, query_set: int) -> bool:
    assert not client.problems, "\n".join(client.problems[:20])
    return bool(client.ws.state.version["querySet"] == query_set)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def scenario(server: LiveServer) -> tuple[World, list[Client], dict[str, Any]]:
    rng = random.Random(SEED)
    world = World()
    clients: list[Client] = []
    stats: dict[str, Any] = {}

    async def open_client(name: str) -> Client:
        client = Client(name, await AsyncWs.open(server.ws_url))
        clients.append(client)
        await client.start()
        return client

    try:
        # Seed the table.
        seeder = await open_client("seeder")
        for i in range(12):
            future = await seeder.mutate(
                "items:insert", {"group": GROUPS[i % 3], "value": float(rng.randint(0, 50))}
            )
            world.record(await asyncio.wait_for(future, 10))
        subscribers = [await open_client(f"subscriber{i}") for i in range(SUBSCRIBERS)]
        for sub in subscribers:
            await sub.change_queries(
                [world.random_query(rng) for _ in range(rng.randint(3, 5))], []
            )
        writers = [await open_client(f"writer{i}") for i in range(WRITERS)]
        for w in writers:
            await w.change_queries([("items:total", {})], [])

        until = asyncio.get_running_loop().time() + WRITE_SECONDS
        results = await asyncio.gather(
            *(writer(w, world, random.Random(rng.random()), until) for w in writers),
            *(subscriber(s, world, random.Random(rng.random()), until) for s in subscribers),
        )
        stats["mutations"] = sum(r for r in results if r is not None)

        # Bring everyone to the latest ts: a new query's first result comes at a ts
        # no lower than any commit so far, and so must the rest of the client's state.
        last_ts = max(ts for ts, _ in world.log)
        for client in clients:
            await client.change_queries([("items:total", {})], [])
        for client in clients:
            version = client.ws.query_set
            await wait_for(lambda c=client, v=version: caught_up(c, v))
            assert client.ws.state.ts >= last_ts, client.name
        return world, clients, stats
    finally:
        for client in clients:
            await client.stop()


def transition_mismatches(world: World, clients: list[Client]) -> list[str]:
    """Every subscribed query of every accepted Transition that differs from its value at the ts."""
    snapshots = [s for c in clients for s in c.snapshots]
    states = world.states_at([s.ts for s in snapshots])
    by_name = {c.name: c for c in clients}
    mismatches = []
    for snap in snapshots:
        client = by_name[snap.who]
        for query_id, value in snap.values.items():
            expected = evaluate(client.queries[query_id], states[snap.ts])
            if value != expected:
                mismatches.append(
                    f"{snap.who} transition {snap.index} ts {snap.ts}: "
                    f"{client.queries[query_id]} = {value!r}, expected {expected!r}"
                )
    return mismatches


def test_live_queries_stay_consistent_under_concurrent_writers(
    make_live_server: Any,
) -> None:
    server = make_live_server(FILES)
    world, clients, stats = asyncio.run(asyncio.wait_for(scenario(server), 60))

    problems = [p for c in clients for p in c.problems]
    assert not problems, "\n".join(problems[:20])
    assert stats["mutations"] > 100, stats
    assert world.failures > 0  # rolled-back mutations were exercised too

    # (3) Every accepted Transition shows every subscribed query as of its ts.
    mismatches = transition_mismatches(world, clients)
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:20])

    # Enough happened for this to mean something.
    transitions = sum(len(c.snapshots) for c in clients)
    print(f"{stats['mutations']} mutations ({world.failures} failed), {transitions} transitions")
    assert transitions > 200, transitions
    for client in clients:
        assert len(client.ws.state.transitions) == len(client.snapshots)

    # The final state is the database's own.
    final = world.states_at([max(ts for ts, _ in world.log)])
    (final_state,) = final.values()
    database = server.app.database

    def read_table(tx: Any) -> State:
        from syncline.database.query import Query as DbQuery

        return {
            d["_id"]: {"group": d["group"], "value": d["value"]}
            for d in DbQuery(tx, "items").collect()
        }

    assert database.run_read(read_table).value == final_state
    for client in clients:
        for query_id, result in client.ws.state.results.items():
            assert result[1] == evaluate(client.queries[query_id], final_state)
