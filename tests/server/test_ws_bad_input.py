"""Bad input on the sync WebSocket: the offending connection is closed, nobody else notices."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from server.conftest import AsyncWs, LiveServer, Server, WsClient, add


@pytest.fixture
def bystander(server: Server) -> WsClient:
    """A healthy connection, open before the misbehaving one."""
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:count", {"channel": "a"})
    ws.transition()
    return ws


def assert_still_served(server: Server, bystander: WsClient) -> None:
    """The bystander still gets live updates, and new connections work."""
    before = bystander.state.value(0)
    fresh = server.ws()
    fresh.connect()
    fresh.add(0, "messages:list", {"channel": "a"})
    fresh.transition()
    fresh.call("messages:send", {"channel": "a", "body": "still here"})
    assert fresh.state.value(0)[-1] == "still here"
    bystander.until(lambda m: bystander.state.value(0) == before + 1)


def fatal(ws: WsClient) -> str:
    """The FatalError the server sends before closing; returns its text."""
    last, closed = ws.expect_close()
    assert last is not None and last["type"] == "FatalError", last
    assert set(last) == {"type", "error"}
    assert closed.code in (1000, 1005, None)
    return str(last["error"])


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{this is not json", "Invalid JSON"),
        ("[]", "Client messages are JSON objects"),
        ('{"type": "Subscribe", "queryId": 1}', "Unknown client message type 'Subscribe'"),
        ('{"type": "Mutation", "udfPath": "a:b", "args": [{}]}', "missing field `requestId`"),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
            '"modifications": [{"type": "Add", "queryId": 0, "udfPath": "x:y", '
            '"args": [{"$bad": 1}]}]}',
            "reserved",
        ),
    ],
    ids=["json", "not-object", "unknown-type", "missing-field", "bad-value"],
)
def test_malformed_frames_are_fatal(
    server: Server, bystander: WsClient, frame: str, message: str
) -> None:
    ws = server.ws()
    ws.connect()
    ws.send(frame)
    assert message in fatal(ws)
    assert_still_served(server, bystander)


def test_malformed_frame_before_connect(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.send("\x00\x01")
    assert "Invalid JSON" in fatal(ws)
    assert_still_served(server, bystander)


def test_wrong_modify_query_set_base_version(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:total")
    ws.transition()
    ws.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [add(1, "messages:total")],
        }
    )
    error = fatal(ws)
    assert "BaseVersionMismatch" in error
    assert "baseVersion 0" in error and "version 1" in error
    assert_still_served(server, bystander)


def test_modify_query_set_must_move_forward(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.connect()
    ws.send({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 0, "modifications": []})
    assert "must be greater than baseVersion" in fatal(ws)
    assert_still_served(server, bystander)


def test_duplicate_query_id(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:total")
    ws.transition()
    ws.add(0, "messages:total")
    assert "Query id 0 was added twice" in fatal(ws)
    assert_still_served(server, bystander)


def test_wrong_authenticate_base_version(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.connect()
    ws.send({"type": "Authenticate", "baseVersion": 3, "tokenType": "None"})
    error = fatal(ws)
    assert "Authenticate baseVersion 3" in error and "identity version 0" in error
    assert_still_served(server, bystander)


def test_remove_of_unknown_query_closes_with_internal_server_error(
    server: Server, bystander: WsClient
) -> None:
    ws = server.ws()
    ws.connect()
    ws.remove(42)
    last, closed = ws.expect_close()
    assert last is None  # no FatalError: the client should reconnect, not stop for good
    assert closed.code == 1011
    assert closed.reason.startswith("InternalServerError")
    assert_still_served(server, bystander)


def test_invalid_args_are_a_query_failure_not_a_protocol_error(
    server: Server, bystander: WsClient
) -> None:
    ws = server.ws()
    ws.connect()
    ws.modify(
        add(0, "messages:count", {"channel": 5}),
        add(1, "messages:count", {}),
        add(2, "messages:count", {"channel": "a", "extra": True}),
        {"type": "Add", "queryId": 3, "udfPath": "messages:count", "args": [{}, {}]},
        {"type": "Add", "queryId": 4, "udfPath": "messages:count", "args": []},
    )
    mods = {m["queryId"]: m for m in ws.transition()["modifications"]}
    assert set(mods) == {0, 1, 2, 3, 4}
    for mod in mods.values():
        assert mod["type"] == "QueryFailed", mod
        assert "errorData" not in mod
    assert "ArgumentValidationError" in mods[0]["errorMessage"]
    assert "channel" in mods[1]["errorMessage"]
    assert "extra" in mods[2]["errorMessage"]
    # The connection lives on.
    ws.add(5, "messages:count", {"channel": "a"})
    ws.transition()
    assert ws.state.value(5) == 0.0
    assert_still_served(server, bystander)


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("x:y", "x:y"), ("messages:nope", "messages:nope"), ("nope.js:list", "nope:list")],
)
def test_unknown_function_is_a_query_failure(
    server: Server, bystander: WsClient, path: str, canonical: str
) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, path)
    [mod] = ws.transition()["modifications"]
    assert mod["type"] == "QueryFailed"
    assert f"Could not find public function for '{canonical}'" in mod["errorMessage"]
    assert_still_served(server, bystander)


def test_invalid_mutation_args_are_a_mutation_failure(server: Server, bystander: WsClient) -> None:
    ws = server.ws()
    ws.connect()
    ws.mutation("messages:send", {"channel": "a"})
    response = ws.expect("MutationResponse")
    assert response["success"] is False and response["ts"] is None
    assert "ArgumentValidationError" in response["result"]
    ws.transition()
    assert_still_served(server, bystander)


def test_an_oversized_session_id_is_refused_before_anything_is_stored(
    server: Server, bystander: WsClient
) -> None:
    ws = server.ws()
    ws.send(
        {
            "type": "Connect",
            "sessionId": "s" * 15_000_000,
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
        }
    )
    ws.send(
        {
            "type": "Mutation",
            "requestId": 0,
            "udfPath": "messages:send",
            "args": [{"channel": "oversized", "body": "never"}],
        }
    )
    error = fatal(ws)
    assert error.startswith("Connect.sessionId: expected a UUID-sized id")
    assert len(error) < 300
    # The mutation after it never ran (so nothing was stored under that id).
    check = server.ws()
    check.connect()
    check.add(0, "messages:count", {"channel": "oversized"})
    check.transition()
    assert check.state.value(0) == 0
    assert_still_served(server, bystander)


# ---------------------------------------------------------------------- real uvicorn


def test_oversized_frame_closes_only_that_connection(live_server: LiveServer) -> None:
    async def main() -> tuple[int | None, Any]:
        watcher = await AsyncWs.open(live_server.ws_url)
        big = await AsyncWs.open(live_server.ws_url)
        try:
            await watcher.connect()
            await watcher.modify(add(0, "messages:count", {"channel": "a"}))
            await watcher.until(lambda m: m["type"] == "Transition")

            await big.connect()
            frame = '{"type":"Event","eventType":"x","event":"' + "x" * (17 * 1024 * 1024) + '"}'
            with pytest.raises(ConnectionClosed) as info:
                await big.send(frame)
                await big.receive(timeout=10)
            code = info.value.rcvd.code if info.value.rcvd is not None else None

            # Everyone else carries on.
            writer = await AsyncWs.open(live_server.ws_url)
            try:
                await writer.connect()
                await writer.mutation("messages:send", {"channel": "a", "body": "after"})
                response = await writer.until(lambda m: m["type"] == "MutationResponse")
                assert response["success"] is True
            finally:
                await writer.close()
            await watcher.until(lambda m: watcher.state.results.get(0) == ("ok", 1.0))
            return code, response
        finally:
            await big.close()
            await watcher.close()

    code, _ = asyncio.run(main())
    assert code == 1009  # message too big


def test_frame_just_under_the_limit_is_accepted(live_server: LiveServer) -> None:
    async def main() -> dict[str, Any]:
        ws = await AsyncWs.open(live_server.ws_url)
        try:
            await ws.connect()
            body = "y" * (15 * 1024 * 1024)
            await ws.mutation("messages:send", {"channel": "big", "body": body})
            return await ws.until(lambda m: m["type"] == "MutationResponse", timeout=20)
        finally:
            await ws.close()

    response = asyncio.run(main())
    # Accepted by the transport; the document is over the 1 MiB value limit, so the
    # mutation itself fails cleanly.
    assert response["success"] is False
    assert response["ts"] is None
    assert "Document is too large" in response["result"]


def test_abrupt_disconnects_release_subscriptions(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    live = live_server.app.live

    async def main() -> None:
        watcher = await AsyncWs.open(live_server.ws_url)
        try:
            await watcher.connect()
            await watcher.modify(add(0, "messages:count", {"channel": "a"}))
            await watcher.until(lambda m: m["type"] == "Transition")
            for n in range(5):
                doomed = await AsyncWs.open(live_server.ws_url)
                await doomed.connect()
                await doomed.modify(
                    add(0, "messages:list", {"channel": f"gone{n}"}),
                    add(1, "messages:count", {"channel": "a"}),
                )
                await doomed.until(lambda m: m["type"] == "Transition")
                await doomed.mutation("messages:send", {"channel": "a", "body": "x"})
                await doomed.until(lambda m: m["type"] == "MutationResponse")
                await doomed.mutation("messages:send", {"channel": "b", "body": "x"})
                # Drop the TCP connection without a close handshake, mid-conversation.
                doomed.connection.transport.abort()
                await doomed.close()
            await watcher.until(lambda m: watcher.state.results.get(0) == ("ok", 5.0))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(live) > 1 and loop.time() < deadline:
                await asyncio.sleep(0.02)
            assert len(live) == 1  # only the watcher's count(a) is left
        finally:
            await watcher.close()

    with caplog.at_level(logging.INFO, logger="syncline"):
        asyncio.run(main())
    # A client that vanishes is routine, not an error worth a traceback.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
