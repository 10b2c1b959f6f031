"""syncline.client against a fake sync server (tests/fake_sync_server.py).

Every async test runs on a fresh event loop and fails if it leaves a task behind.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from fake_sync_server import ADMIN_KEY, FakeSyncServer, ThreadedFakeServer
from syncline.client import (
    AsyncClient,
    Client,
    ClientClosed,
    ConnectionLost,
    FunctionError,
    Subscription,
    ws_url,
)
from syncline.errors import AuthError, ConvexError, InvalidRequest
from syncline.functions.paths import api
from syncline.sync.protocol import encode_ts
from syncline.values.types import Int64

FAST = {"_backoff_initial": 0.01, "_backoff_max": 0.05}


def async_test(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    def wrapper() -> None:
        async def main() -> None:
            async with asyncio.timeout(10):
                await fn()
            await asyncio.sleep(0)
            leftover = asyncio.all_tasks() - {asyncio.current_task()}
            assert not leftover, f"tasks left behind: {leftover}"

        asyncio.run(main())

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def make_client(server: FakeSyncServer, **kwargs: Any) -> AsyncClient:
    return AsyncClient(server.url, **{**FAST, **kwargs})


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for client-side state (the server side has ``FakeSyncServer.wait_for``)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def nothing_new(client: AsyncClient, subscription: Subscription) -> bool:
    """Whether ``subscription`` has no result waiting once ``client`` caught up with the server.

    The barrier is a round trip: a mutation resolves only after the Transition that
    reaches its commit, and frames arrive in order, so any update for the
    subscription sent before it has been delivered by then.
    """
    await client.mutation("kv:set", {"key": "barrier", "value": 0})
    return subscription._pending is None


def types(server: FakeSyncServer, conn: int) -> list[str]:
    return [m["type"] for i, m in server.received if i == conn]


SPECIAL = {
    "int64": Int64(-2),
    "max": Int64(2**63 - 1),
    "bytes": b"\x00\x01\xff",
    "nan": math.nan,
    "negzero": -0.0,
    "inf": math.inf,
    "ninf": -math.inf,
    "int": 3,
    "nested": [1.5, "x", None, True, {"k": b""}],
}


def check_special(value: Any) -> None:
    assert type(value["int64"]) is Int64 and value["int64"] == -2
    assert value["max"] == 2**63 - 1 and type(value["max"]) is Int64
    assert value["bytes"] == b"\x00\x01\xff"
    assert math.isnan(value["nan"])
    assert value["negzero"] == 0.0 and math.copysign(1.0, value["negzero"]) == -1.0
    assert value["inf"] == math.inf and value["ninf"] == -math.inf
    assert value["int"] == 3.0 and type(value["int"]) is float
    assert value["nested"] == [1.5, "x", None, True, {"k": b""}]


def test_ws_url() -> None:
    assert ws_url("http://127.0.0.1:3210") == "ws://127.0.0.1:3210/api/sync"
    assert ws_url("http://127.0.0.1:3210/") == "ws://127.0.0.1:3210/api/sync"
    assert ws_url("https://example.com/backend/") == "wss://example.com/backend/api/sync"
    assert ws_url("HTTPS://example.com") == "wss://example.com/api/sync"
    assert ws_url("ws://h:1") == "ws://h:1/api/sync"
    for bad in ("example.com", "ftp://example.com", "http://"):
        with pytest.raises(ValueError, match="Invalid deployment URL"):
            ws_url(bad)


@async_test
async def test_round_trips_preserve_values() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        check_special(await client.query("kv:echo", {"value": SPECIAL}))
        check_special(await client.mutation("kv:set", {"key": "k", "value": SPECIAL}))
        check_special(await client.action(api.kv.echo, {"value": SPECIAL}))
        assert await client.query(api.kv.get, {"key": "k"}) is not None

    (mutation,) = server.messages("Mutation")
    assert mutation["udfPath"] == "kv:set"
    wire = mutation["args"][0]["value"]
    assert wire["int64"] == {"$integer": "/v////////8="}
    assert wire["negzero"] == {"$float": "AAAAAAAAAIA="}
    assert wire["bytes"] == {"$bytes": "AAH/"}
    # A Python int travels as a float64, like the official Python client sends it.
    assert wire["int"] == 3.0 and isinstance(wire["int"], float)
    # A one-shot query is an Add followed by a Remove.
    mods = [
        (mod["type"], mod["queryId"])
        for m in server.messages("ModifyQuerySet")
        for mod in m["modifications"]
    ]
    assert mods[:2] == [("Add", 0), ("Remove", 0)]


@async_test
async def test_failures_raise() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        with pytest.raises(FunctionError, match="mutation failed") as plain:
            await client.mutation("kv:fail")
        assert plain.value.code == "FunctionError"
        with pytest.raises(ConvexError) as convex:
            await client.mutation("kv:convex_fail", {"data": {"code": "NOPE", "n": Int64(1)}})
        assert convex.value.data == {"code": "NOPE", "n": Int64(1)}
        with pytest.raises(FunctionError, match="boom"):
            await client.query("kv:fail")
        with pytest.raises(ConvexError) as query_error:
            await client.query("kv:fail_data")
        assert query_error.value.data == {"why": "x"}
        with pytest.raises(ConvexError) as action_error:
            await client.action("kv:fail_data")
        assert action_error.value.data == [1.0]
        with pytest.raises(FunctionError, match="action failed"):
            await client.action("kv:nope")
        with pytest.raises(TypeError, match="must be a dict"):
            await client.mutation("kv:set", [1])  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            await client.query("not a path!")

        # A failing subscription raises at that point and stays usable.
        subscription = client.subscribe("kv:fail")
        with pytest.raises(FunctionError):
            await anext(subscription)
        assert await nothing_new(client, subscription)
        await subscription.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(subscription)


@async_test
async def test_mutation_resolves_only_after_a_transition_reaches_its_ts() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        subscription = client.subscribe("kv:get", {"key": "a"})
        assert await anext(subscription) is None
        server.transition_gate.clear()
        # A failure does not wait for the Transition that follows it.
        with pytest.raises(ConvexError):
            async with asyncio.timeout(1):
                await client.mutation("kv:convex_fail", {"data": "no"})
        server.transition_gate.set()
        await server.wait_for(lambda: server.connections[0].sent[-1]["type"] == "Transition")
        server.transition_gate.clear()

        mutation = asyncio.create_task(client.mutation("kv:set", {"key": "a", "value": "v1"}))
        await server.wait_for(  # the failure's response, then this one's
            lambda: [m["type"] for m in server.connections[0].sent].count("MutationResponse") == 2
        )
        (request,) = client._requests.values()
        # The client has read the (successful) response ...
        await eventually(lambda: request.committed_ts is not None)
        # ... and still waits for the Transition that shows the write (reading the
        # response is what would have resolved it).
        assert not request.future.done() and request.id in client._requests
        assert not mutation.done()

        server.transition_gate.set()
        assert await mutation == "v1"
        # Read-your-writes: the subscription already holds the new value.
        assert await client.query("kv:get", {"key": "a"}) == "v1"
        assert await anext(subscription) == "v1"


@async_test
async def test_subscriptions_follow_changes_from_any_client() -> None:
    async with FakeSyncServer() as server, make_client(server) as alice, make_client(server) as bob:
        subscription = alice.subscribe("kv:get", {"key": "x"})
        assert await anext(subscription) is None
        await bob.mutation("kv:set", {"key": "x", "value": 1})
        assert await anext(subscription) == 1.0
        await alice.mutation("kv:set", {"key": "x", "value": 2})
        assert await anext(subscription) == 2.0
        # Unrelated writes do not produce results.
        await bob.mutation("kv:set", {"key": "other", "value": 3})
        assert await nothing_new(alice, subscription)

        # Leaving an ``async for`` loop unsubscribes.
        async for value in alice.subscribe("kv:get", {"key": "y"}):
            assert value is None
            break
        await server.wait_for(
            lambda: any(
                mod["type"] == "Remove"
                for m in server.messages("ModifyQuerySet", 0)
                for mod in m["modifications"]
            )
        )
        await subscription.aclose()


@async_test
async def test_identical_subscriptions_share_one_query() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        await client.mutation("kv:set", {"key": "a", "value": "A"})
        s1 = client.subscribe("kv:get", {"key": "a"})
        s2 = client.subscribe(api.kv.get, {"key": "a"})
        s3 = client.subscribe("kv:get", {"key": "b"})
        assert s1.query_id == s2.query_id != s3.query_id
        assert await anext(s1) == "A"
        assert await anext(s2) == "A"
        assert await anext(s3) is None
        # A late subscriber gets the current result at once, from the shared query.
        s4 = client.subscribe("kv:get", {"key": "a"})
        assert s4.query_id == s1.query_id
        assert await anext(s4) == "A"
        assert await client.query("kv:get", {"key": "a"}) == "A"

        adds = [
            mod
            for m in server.messages("ModifyQuerySet")
            for mod in m["modifications"]
            if mod["type"] == "Add"
        ]
        assert [mod["args"] for mod in adds] == [[{"key": "a"}], [{"key": "b"}]]

        for subscription in (s1, s2, s4):
            subscription.close()
        s3.close()
        await server.wait_for(lambda: len(server.connections[0].queries) == 0)
        removes = [
            mod["queryId"]
            for m in server.messages("ModifyQuerySet")
            for mod in m["modifications"]
            if mod["type"] == "Remove"
        ]
        assert removes == [s1.query_id, s3.query_id]


@async_test
async def test_reconnect_resubscribes_resends_mutations_and_fails_actions() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        subscription = client.subscribe("kv:get", {"key": "a"})
        assert await anext(subscription) is None

        server.silence()
        mutation = asyncio.create_task(client.mutation("kv:set", {"key": "a", "value": 1}))
        action = asyncio.create_task(client.action("kv:echo", {"value": "ran"}))
        await server.wait_for(
            lambda: bool(server.messages("Mutation", 0) and server.messages("Action", 0))
        )
        await server.drop()

        with pytest.raises(ConnectionLost, match="Connection lost while action was in flight"):
            await action
        assert await mutation == 1.0
        assert await anext(subscription) == 1.0

    first, second = server.messages("Connect", 0)[0], server.messages("Connect", 1)[0]
    assert second["sessionId"] == first["sessionId"] == client.session_id
    assert (first["connectionCount"], second["connectionCount"]) == (0, 1)
    assert (first["lastCloseReason"], second["lastCloseReason"]) == (
        "InitialConnect",
        "InternalServerError",
    )
    assert "maxObservedTimestamp" not in first
    assert second["maxObservedTimestamp"] == encode_ts(1000)
    assert types(server, 1)[:3] == ["Connect", "ModifyQuerySet", "Mutation"]
    resubscribe = server.messages("ModifyQuerySet", 1)[0]
    assert (resubscribe["baseVersion"], resubscribe["newVersion"]) == (0, 1)
    assert [mod["queryId"] for mod in resubscribe["modifications"]] == [subscription.query_id]
    assert (
        server.messages("Mutation", 1)[0]["requestId"]
        == server.messages("Mutation", 0)[0]["requestId"]
    )
    assert server.messages("Action", 1) == []
    assert len(server.mutation_runs) == 1


@async_test
async def test_answered_mutation_is_not_resent_and_resolves_after_reconnect() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        await client.connect()
        server.transition_gate.clear()
        mutation = asyncio.create_task(client.mutation("kv:set", {"key": "a", "value": "x"}))
        await eventually(lambda: any(r.committed_ts is not None for r in client._requests.values()))
        await server.drop()
        assert await mutation == "x"
        server.transition_gate.set()
        assert server.messages("Mutation", 1) == []
        assert len(server.connections) == 2


@async_test
async def test_calls_made_while_disconnected_are_sent_on_reconnect() -> None:
    async with (
        FakeSyncServer() as server,
        make_client(server, _backoff_initial=0.3, _backoff_max=0.3) as client,
    ):
        await client.connect()
        await server.drop()
        await eventually(lambda: client._conn is None)
        subscription = client.subscribe("kv:get", {"key": "d"})
        action = asyncio.create_task(client.action("kv:echo", {"value": "later"}))
        mutation = asyncio.create_task(client.mutation("kv:set", {"key": "d", "value": "set"}))
        assert await action == "later"
        assert await mutation == "set"
        assert await anext(subscription) == "set"
        assert types(server, 1)[:4] == ["Connect", "ModifyQuerySet", "Action", "Mutation"]
        await subscription.aclose()


@async_test
async def test_fatal_errors_and_malformed_messages_reconnect() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        await client.connect()
        await server.inject({"type": "FatalError", "error": "BadRequest: nope"})
        await server.wait_for(lambda: len(server.connections) == 2)
        await client.connect()
        await server.connections[1].ws.send("{not json")
        await server.wait_for(lambda: len(server.connections) == 3)
        await server.inject({"type": "Mystery"})
        await server.wait_for(lambda: len(server.connections) == 4)
        assert await client.query("kv:echo", {"value": "ok"}) == "ok"
        reasons = [server.messages("Connect", i)[0]["lastCloseReason"] for i in (1, 2, 3)]
        assert reasons == ["FatalError", "ProtocolError", "ProtocolError"]


@async_test
async def test_unchanged_results_are_not_repeated_after_reconnect() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        subscription = client.subscribe("kv:get", {"key": "a"})
        assert await anext(subscription) is None
        await server.drop()
        await server.wait_for(lambda: bool(server.messages("ModifyQuerySet", 1)))
        await client.connect()
        assert await nothing_new(client, subscription)
        await client.mutation("kv:set", {"key": "a", "value": 2})
        assert await anext(subscription) == 2.0


@async_test
async def test_responses_for_unknown_requests_are_ignored() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        await client.connect()
        await server.inject(
            {
                "type": "MutationResponse",
                "requestId": 99,
                "success": True,
                "result": 1.0,
                "ts": encode_ts(5),
                "logLines": [],
            }
        )
        await server.inject(
            {
                "type": "ActionResponse",
                "requestId": 98,
                "success": True,
                "result": None,
                "logLines": [],
            }
        )
        assert await client.action("kv:echo", {"value": "still fine"}) == "still fine"
        assert len(server.connections) == 1


@async_test
async def test_set_auth_and_reauthentication_after_reconnect() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        whoami = client.subscribe("kv:whoami")
        assert await anext(whoami) is None

        await client.set_auth("alice")
        assert await anext(whoami) == "alice"
        await client.set_auth(None)
        assert await anext(whoami) is None
        await client.set_admin_auth(ADMIN_KEY, {"name": "Ann"})
        assert await anext(whoami) == "admin as Ann"
        assert server.messages("Authenticate") == [
            {"type": "Authenticate", "baseVersion": 0, "tokenType": "User", "value": "alice"},
            {"type": "Authenticate", "baseVersion": 1, "tokenType": "None"},
            {
                "type": "Authenticate",
                "baseVersion": 2,
                "tokenType": "Admin",
                "value": ADMIN_KEY,
                "impersonating": {"name": "Ann"},
            },
        ]

        await server.drop()
        await server.wait_for(lambda: bool(server.messages("ModifyQuerySet", 1)))
        assert types(server, 1)[:3] == ["Connect", "Authenticate", "ModifyQuerySet"]
        assert server.messages("Authenticate", 1)[0]["baseVersion"] == 0
        assert await client.query("kv:whoami") == "admin as Ann"
        await whoami.aclose()


@async_test
async def test_rejected_credentials_raise_auth_error() -> None:
    async with FakeSyncServer() as server:
        async with make_client(server) as client:
            await client.set_auth("carol")
            with pytest.raises(AuthError, match="Could not verify token"):
                await client.set_auth("bad")
            # The server closed the socket; the client goes on, unauthenticated.
            assert await client.query("kv:whoami") is None
            assert server.messages("Authenticate", 1) == []

        async with make_client(server, auth="bad") as client:
            with pytest.raises(AuthError):
                await client.connect()
        async with make_client(server, admin_key="wrong") as client:
            with pytest.raises(AuthError):
                await client.connect()
        async with make_client(server, auth="dave") as client:
            await client.connect()
            assert await client.query("kv:whoami") == "dave"


@async_test
async def test_start_version_mismatch_reconnects() -> None:
    async with FakeSyncServer() as server, make_client(server) as client:
        subscription = client.subscribe("kv:get", {"key": "a"})
        assert await anext(subscription) is None
        server.corrupt_next_transition()
        assert await client.mutation("kv:set", {"key": "a", "value": 5}) == 5.0
        assert await anext(subscription) == 5.0
        assert len(server.connections) == 2
        assert server.messages("Connect", 1)[0]["lastCloseReason"] == "StartVersionMismatch"
        assert len(server.mutation_runs) == 1


@async_test
async def test_silent_server_is_detected() -> None:
    async with FakeSyncServer(ping_interval=0.05) as server:
        async with make_client(server, _liveness_timeout=0.3) as client:
            await client.connect()
            # Pings alone keep an idle connection alive: a dozen of them (0.6 s, twice
            # the liveness timeout) reach the first connection, and it is the only one.
            first = server.connections[0]
            await server.wait_for(lambda: first.sent.count({"type": "Ping"}) >= 12)
            assert len(server.connections) == 1

            server.silence()
            started = time.monotonic()
            await server.wait_for(lambda: len(server.connections) == 2, timeout=3)
            assert time.monotonic() - started >= 0.25
            assert await client.query("kv:echo", {"value": "back"}) == "back"
        assert server.messages("Connect", 1)[0]["lastCloseReason"] == "InactiveServer"


@async_test
async def test_unreachable_server_calls_are_cancellable() -> None:
    client = AsyncClient("http://127.0.0.1:9", **FAST)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.mutation("kv:set", {"key": "a", "value": 1})
    assert client._requests == {}
    await client.close()


@async_test
async def test_close_fails_pending_calls_and_ends_subscriptions() -> None:
    async with FakeSyncServer() as server:
        client = make_client(server)
        subscription = client.subscribe("kv:get", {"key": "a"})
        assert await anext(subscription) is None
        waiting = asyncio.create_task(anext(subscription))
        action = asyncio.create_task(client.action("kv:hang"))
        server.transition_gate.clear()
        mutation = asyncio.create_task(client.mutation("kv:set", {"key": "a", "value": 1}))
        await server.wait_for(
            lambda: bool(server.messages("Action") and server.messages("Mutation"))
        )

        await client.close()
        await client.close()
        with pytest.raises(ClientClosed):
            await action
        with pytest.raises(ClientClosed):
            await mutation
        with pytest.raises(StopAsyncIteration):
            await waiting
        with pytest.raises(ClientClosed):
            await client.query("kv:echo")
        with pytest.raises(ClientClosed):
            client.subscribe("kv:echo")


def test_async_client_needs_a_running_loop() -> None:
    client = AsyncClient("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="running event loop"):
        client.subscribe("kv:get")
    with pytest.raises(ValueError, match="not both"):
        AsyncClient("http://127.0.0.1:9", auth="a", admin_key="b")


def test_sync_client() -> None:
    threads_before = threading.active_count()
    with ThreadedFakeServer() as fake:
        with Client(fake.url, **FAST) as client:
            assert client.query("kv:echo", {"value": Int64(7)}) == Int64(7)
            subscription = client.subscribe("kv:get", {"key": "s"})
            assert next(subscription) is None
            assert client.mutation("kv:set", {"key": "s", "value": "x"}) == "x"
            assert next(subscription) == "x"
            check_special(client.action("kv:echo", {"value": SPECIAL}))
            with pytest.raises(ConvexError):
                client.mutation("kv:convex_fail", {"data": 1})
            client.set_auth("erin")
            assert client.query("kv:whoami") == "erin"
            with pytest.raises(AuthError):
                client.set_auth("bad")
            client.set_admin_auth(ADMIN_KEY)
            assert client.query("kv:whoami") == "admin"
            subscription.close()
            with pytest.raises(StopIteration):
                next(subscription)

            # A for loop over a subscription, fed by another thread's writes.
            seen = []
            with client.subscribe("kv:get", {"key": "n"}) as numbers:
                writer = threading.Thread(
                    target=lambda: [
                        client.mutation("kv:set", {"key": "n", "value": i}) for i in (1, 2)
                    ]
                )
                for value in numbers:
                    seen.append(value)
                    if value is None:
                        writer.start()
                    if value == 2.0:
                        break
                writer.join()
            assert seen[0] is None and seen[-1] == 2.0

        with pytest.raises(ClientClosed):
            client.query("kv:echo")
        assert fake.call(lambda server: _connections_closed(server))
    assert threading.active_count() == threads_before


async def _connections_closed(server: FakeSyncServer, timeout: float = 5.0) -> bool:
    """Whether every connection of ``server`` reaches CLOSED within ``timeout``."""
    from websockets.protocol import State

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not all(conn.ws.state is State.CLOSED for conn in server.connections):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_sync_client_timeout_and_close_from_another_thread() -> None:
    with ThreadedFakeServer() as fake:
        client = Client(fake.url, timeout=0.3, **FAST)
        with pytest.raises(TimeoutError, match="did not complete"):
            client.action("kv:hang")
        subscription = client.subscribe("kv:get", {"key": "z"})
        assert next(subscription) is None
        closer = threading.Timer(0.1, client.close)
        closer.start()
        with pytest.raises(StopIteration):
            next(subscription)  # blocks until the other thread closes the client
        closer.join()
        assert not client._portal._thread.is_alive()
        with pytest.raises(StopIteration):
            next(subscription)
        subscription.close()
