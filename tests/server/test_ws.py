"""The sync WebSocket, frame by frame: version chain, queries, mutations, actions, pings."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from server.conftest import INITIAL, MakeServer, Server, WsClient, add
from syncline.clock import ManualClock
from syncline.sync import session as session_module
from syncline.sync.protocol import decode_ts, encode_ts


def subscribed(server: Server, *queries: tuple[int, str, dict[str, Any]]) -> WsClient:
    """A connected client whose first Transition (with every query's result) has arrived."""
    ws = server.ws()
    ws.connect()
    ws.modify(*(add(qid, path, args) for qid, path, args in queries))
    ws.transition()
    assert set(ws.state.results) >= {qid for qid, _, _ in queries}
    return ws


def test_first_transition_starts_at_zero_and_holds_the_result(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:list", {"channel": "a"})
    msg = ws.transition()
    assert msg["startVersion"] == {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
    assert msg["endVersion"]["querySet"] == 1
    assert msg["endVersion"]["identity"] == 0
    assert decode_ts(msg["endVersion"]["ts"]) == server.app.database.last_ts
    assert msg["modifications"] == [
        {
            "type": "QueryUpdated",
            "queryId": 0,
            "value": [],
            "logLines": ["[LOG] listing a"],
            "journal": None,
        }
    ]
    assert isinstance(msg["serverTs"], int)


def test_nothing_is_sent_after_connect_alone(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    # Frames arrive in order: anything sent for the Connect alone would come
    # before the answer to the first query set.
    ws.add(0, "messages:total")
    first = ws.receive()
    assert first["type"] == "Transition", first
    assert first["startVersion"]["querySet"] == 0 and first["endVersion"]["querySet"] == 1


def test_versions_chain_and_count_query_sets_and_identities(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ends = []
    ws.add(0, "messages:count", {"channel": "a"})
    ends.append(ws.transition()["endVersion"])
    ws.modify(add(1, "messages:list", {"channel": "a"}), add(2, "messages:total", {}))
    msg = ws.transition()
    ends.append(msg["endVersion"])
    assert {m["queryId"] for m in msg["modifications"]} == {1, 2}
    ws.remove(1)
    msg = ws.transition()
    ends.append(msg["endVersion"])
    assert msg["modifications"] == [{"type": "QueryRemoved", "queryId": 1}]
    ws.authenticate("None")
    msg = ws.transition()
    ends.append(msg["endVersion"])
    ws.authenticate("None")
    ends.append(ws.transition()["endVersion"])
    # An empty ModifyQuerySet still moves the version (Rust sends one after reconnecting).
    ws.modify()
    ends.append(ws.transition()["endVersion"])
    assert [(e["querySet"], e["identity"]) for e in ends] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (3, 1),
        (3, 2),
        (4, 2),
    ]
    # Every start equals the previous end (checked on receipt), and ts never decreases.
    tss = [decode_ts(t["endVersion"]["ts"]) for t in ws.state.transitions]
    assert tss == sorted(tss)
    assert ws.state.transitions[0]["startVersion"] == INITIAL


def test_remove_answers_query_removed_and_stops_updates(server: Server) -> None:
    ws = subscribed(server, (0, "messages:list", {"channel": "a"}), (1, "messages:total", {}))
    ws.remove(0)
    assert ws.transition()["modifications"] == [{"type": "QueryRemoved", "queryId": 0}]
    ws.call("messages:send", {"channel": "a", "body": "x"})
    last = ws.state.transitions[-1]
    assert [m["queryId"] for m in last["modifications"]] == [1]
    assert ws.state.results == {1: ("ok", 1.0)}


def test_one_shot_query_add_then_remove(server: Server) -> None:
    # What `client.query()` does in the official clients.
    ws = server.ws()
    ws.connect()
    ws.add(5, "messages:total")
    assert ws.transition()["modifications"][0]["value"] == 0.0
    ws.remove(5)
    assert ws.transition()["modifications"] == [{"type": "QueryRemoved", "queryId": 5}]
    # Removing and re-adding the same id later works too.
    ws.add(5, "messages:total")
    assert ws.transition()["modifications"][0]["queryId"] == 5


def test_mutation_response_is_followed_by_a_transition_with_its_effects(server: Server) -> None:
    ws = subscribed(
        server,
        (0, "messages:list", {"channel": "a"}),
        (1, "messages:count", {"channel": "a"}),
    )
    request_id = ws.mutation("messages:send", {"channel": "a", "body": "hi"})
    before = []
    while (msg := ws.receive())["type"] != "MutationResponse":
        before.append(msg)
    assert msg["requestId"] == request_id
    assert msg["success"] is True
    assert isinstance(msg["result"], str)  # the new document's id
    assert msg["logLines"] == ["[LOG] sending hi"]
    assert "errorData" not in msg
    ts = decode_ts(msg["ts"])
    assert ts == server.app.database.last_ts
    # Nothing before the response may reach the mutation's ts (JS would wait another round).
    for early in before:
        assert early["type"] == "Transition"
        assert decode_ts(early["endVersion"]["ts"]) < ts
    # The very next Transition reaches ts and already holds the new results.
    transition = ws.receive()
    assert transition["type"] == "Transition"
    assert decode_ts(transition["endVersion"]["ts"]) >= ts
    values = {
        m["queryId"]: m["value"] for m in transition["modifications"] if m["type"] == "QueryUpdated"
    }
    assert values == {0: ["hi"], 1: 1.0}


def test_mutation_without_subscriptions_gets_a_transition_from_zero(server: Server) -> None:
    # The Rust client's first mutation: Connect, Mutation, and nothing else.
    ws = server.ws()
    ws.connect()
    ws.mutation("messages:send", {"channel": "a", "body": "x"})
    response = ws.expect("MutationResponse")
    transition = ws.transition()
    assert transition["startVersion"] == INITIAL
    assert transition["endVersion"] == {"querySet": 0, "identity": 0, "ts": response["ts"]}
    assert transition["modifications"] == []


def test_failed_mutation_has_null_ts_no_error_data_and_a_transition(server: Server) -> None:
    ws = subscribed(server, (0, "messages:count", {"channel": "a"}))
    request_id = ws.mutation("messages:fail", {"channel": "a"})
    response = ws.expect("MutationResponse")
    assert response["requestId"] == request_id
    assert response["success"] is False
    assert response["ts"] is None
    assert "errorData" not in response
    assert "Server Error" in response["result"]
    assert "Uncaught ValueError: mutation boom" in response["result"]
    assert isinstance(response["logLines"], list)
    transition = ws.transition()
    # The failed mutation's insert was rolled back: nothing changed.
    assert transition["modifications"] == []
    assert ws.state.value(0) == 0.0


def test_convex_error_mutation_carries_error_data(server: Server) -> None:
    ws = subscribed(server, (0, "messages:count", {"channel": "a"}))
    ws.mutation("messages:convex_fail", {"channel": "a"})
    response = ws.expect("MutationResponse")
    assert response["success"] is False
    assert response["ts"] is None
    assert "Uncaught ConvexError" in response["result"]
    assert response["errorData"] == {"why": "bad", "n": {"$integer": encode_int64(3)}}
    # Python completes a ConvexError failure only at the next Transition: it must come.
    assert ws.transition()["modifications"] == []
    assert ws.state.value(0) == 0.0


def encode_int64(n: int) -> str:
    import base64
    import struct

    return base64.b64encode(struct.pack("<q", n)).decode()


def test_unknown_and_internal_mutations_fail_like_missing_ones(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    for path in ("messages:nope", "nope:nope", "messages:secret"):
        ws.mutation(path)
        response = ws.expect("MutationResponse")
        canonical = path
        assert response["success"] is False
        assert f"Could not find public function for '{canonical}'" in response["result"]
        assert "errorData" not in response
        ws.transition()
    # A query called as a mutation names both kinds.
    ws.mutation("messages:total")
    response = ws.expect("MutationResponse")
    assert "as Mutation, but it is defined as Query" in response["result"]
    ws.transition()


def test_action_responses(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ok = ws.action("messages:double", {"x": 4})
    response = ws.expect("ActionResponse")
    assert response == {
        "type": "ActionResponse",
        "requestId": ok,
        "success": True,
        "result": 8.0,
        "logLines": ["[LOG] doubling"],
    }
    ws.action("messages:convex_nope")
    response = ws.expect("ActionResponse")
    assert response["success"] is False
    assert "ts" not in response
    assert response["errorData"] == "action says no"
    ws.action("messages:plain_nope")
    response = ws.expect("ActionResponse")
    assert response["success"] is False
    assert "RuntimeError: action boom" in response["result"]
    assert "errorData" not in response
    ws.action("messages:double", {"x": "four"})
    response = ws.expect("ActionResponse")
    assert response["success"] is False
    assert "ArgumentValidationError" in response["result"]


def test_action_writes_reach_subscribers(server: Server) -> None:
    ws = subscribed(server, (0, "messages:list", {"channel": "a"}))
    ws.action("messages:send_via_action", {"channel": "a", "body": "from action"})
    responses = []
    ws.until(
        lambda m: (
            (responses.append(m) if m["type"] == "ActionResponse" else None) is None
            and bool(responses)
            and ws.state.results[0] == ("ok", ["from action"])
        )
    )
    assert responses[0]["success"] is True


def test_floats_and_special_values_on_the_wire(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:shapes")
    msg = ws.transition()
    value = msg["modifications"][0]["value"]
    assert value == {
        "float": 2.0,
        "int": 3.0,
        "int64": {"$integer": encode_int64(7)},
        "big": {"$integer": encode_int64(2**40)},
        "neg0": {"$float": "AAAAAAAAAIA="},
        "nan": {"$float": "AAAAAAAA+H8="},
        "bytes": {"$bytes": "AQI="},
        "none": None,
    }
    # Python ints become float64 and are written with a decimal point.
    ws.action("messages:double", {"x": 1.5})
    text = receive_text(ws)
    assert '"result":3.0' in text


def receive_text(ws: WsClient, timeout: float = 5.0) -> str:
    """The next frame as raw text (not parsed or applied)."""
    import anyio

    async def get() -> Any:
        with anyio.fail_after(timeout):
            return await ws.session._send_rx.receive()

    return str(ws.session.portal.call(get)["text"])


def test_query_failures_are_query_failed(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.modify(add(0, "messages:boom"), add(1, "messages:convex_boom"))
    mods = {m["queryId"]: m for m in ws.transition()["modifications"]}
    assert mods[0]["type"] == "QueryFailed"
    assert "Uncaught ValueError: query boom" in mods[0]["errorMessage"]
    assert "errorData" not in mods[0]
    assert mods[0]["journal"] is None and mods[0]["logLines"] == []
    assert mods[1]["type"] == "QueryFailed"
    assert mods[1]["errorData"] == {"why": "query says no"}


def test_mutation_idempotency_across_connections(server: Server) -> None:
    session_id = str(uuid.uuid4())
    ws1 = server.ws()
    ws1.connect(session_id)
    ws1.mutation("messages:send", {"channel": "a", "body": "once"}, request_id=7)
    original = ws1.expect("MutationResponse")
    assert original["success"] is True
    ws1.transition()
    ws1.session.close()

    # The JS client reconnects with the same sessionId and re-sends in-flight mutations.
    ws2 = server.ws()
    ws2.connect(session_id, connectionCount=1, lastCloseReason="InternalServerError")
    ws2.add(0, "messages:list", {"channel": "a"})
    ws2.mutation("messages:send", {"channel": "a", "body": "once"}, request_id=7)
    seen = ws2.until(lambda m: m["type"] == "MutationResponse")
    replay = seen[-1]
    assert replay["success"] is True
    assert replay["result"] == original["result"]
    assert replay["ts"] == original["ts"]
    # Still followed by a Transition, and the document exists once.
    ws2.settle_after(replay)
    assert ws2.state.value(0) == ["once"]
    assert count_messages(server, "a") == 1

    # Another request id, or the same id in another session, runs again.
    ws2.mutation("messages:send", {"channel": "a", "body": "twice"}, request_id=8)
    ws2.settle_after(ws2.expect("MutationResponse"))
    ws3 = server.ws()
    ws3.connect()
    ws3.mutation("messages:send", {"channel": "a", "body": "thrice"}, request_id=7)
    assert ws3.expect("MutationResponse")["result"] != original["result"]
    assert count_messages(server, "a") == 3


def test_failed_mutations_are_not_recorded_for_idempotency(server: Server) -> None:
    ws = server.ws()
    session_id = ws.connect()
    ws.mutation("messages:convex_fail", {"channel": "a"}, request_id=1)
    assert ws.expect("MutationResponse")["success"] is False
    ws.transition()
    again = server.ws()
    again.connect(session_id, connectionCount=1)
    again.mutation("messages:send", {"channel": "a", "body": "retry"}, request_id=1)
    response = again.expect("MutationResponse")
    assert response["success"] is True
    assert count_messages(server, "a") == 1


def count_messages(server: Server, channel: str) -> int:
    response = server.client.post(
        "/api/query",
        json={"path": "messages:count", "args": {"channel": channel}, "format": "json"},
    )
    body = response.json()
    assert body["status"] == "success", body
    return int(body["value"])


def test_mutations_from_one_connection_run_in_order(server: Server) -> None:
    ws = subscribed(server, (0, "messages:list", {"channel": "a"}))
    ids = [ws.mutation("messages:send", {"channel": "a", "body": f"m{i}"}) for i in range(25)]
    responses = []
    while len(responses) < len(ids):
        msg = ws.receive()
        if msg["type"] == "MutationResponse":
            responses.append(msg)
    assert [r["requestId"] for r in responses] == ids
    tss = [decode_ts(r["ts"]) for r in responses]
    assert tss == sorted(tss) and len(set(tss)) == len(tss)
    ws.settle_after(responses[-1])
    assert ws.state.value(0) == [f"m{i}" for i in range(25)]


def test_unchanged_results_are_not_resent(server: Server) -> None:
    ws = subscribed(
        server,
        (0, "messages:count", {"channel": "a"}),
        (1, "messages:list", {"channel": "b"}),
        (2, "messages:list", {"channel": "a"}),
    )
    doc = ws.call("messages:send", {"channel": "a", "body": "v1"})["result"]
    assert ws.state.results[0] == ("ok", 1.0)

    # Editing the body re-runs count(a) (its read set covers the document) but its
    # result is unchanged: only list(a) is re-sent.
    ws.call("messages:edit", {"id": doc, "body": "v2"})
    transition = ws.state.transitions[-1]
    assert [m["queryId"] for m in transition["modifications"]] == [2]
    assert ws.state.value(2) == ["v2"]

    # A write no query read: the version advances, nothing is re-sent.
    response = ws.call("messages:touch_other")
    transition = ws.state.transitions[-1]
    assert transition["modifications"] == []
    assert transition["endVersion"]["ts"] == response["ts"]


def test_identical_subscriptions_in_one_connection(server: Server) -> None:
    ws = subscribed(
        server,
        (0, "messages:count", {"channel": "a"}),
        (1, "messages:count", {"channel": "a"}),
    )
    assert ws.state.results[0] == ws.state.results[1] == ("ok", 0.0)
    assert len(server.app.live) == 1
    ws.call("messages:send", {"channel": "a", "body": "x"})
    assert ws.state.results[0] == ws.state.results[1] == ("ok", 1.0)
    # Dropping one of the two must not unsubscribe the other.
    ws.remove(1)
    ws.transition()
    ws.call("messages:send", {"channel": "a", "body": "y"})
    assert ws.state.results == {0: ("ok", 2.0)}


def test_connections_share_live_queries_and_release_them(server: Server) -> None:
    a = subscribed(server, (0, "messages:count", {"channel": "a"}))
    b = subscribed(server, (3, "messages:count", {"channel": "a"}))
    assert len(server.app.live) == 1
    a.call("messages:send", {"channel": "a", "body": "x"})
    b.until(lambda m: b.state.results.get(3) == ("ok", 1.0))
    a.session.close()
    b.session.close()
    deadline = time.monotonic() + 5
    while len(server.app.live) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.app.live) == 0


def test_writes_from_other_connections_arrive(server: Server) -> None:
    watcher = subscribed(server, (0, "messages:list", {"channel": "a"}))
    writer = server.ws()
    writer.connect()
    for body in ("one", "two"):
        response = writer.call("messages:send", {"channel": "a", "body": body})
        ts = decode_ts(response["ts"])
        watcher.until(lambda m, ts=ts: watcher.state.ts >= ts)
    assert watcher.state.value(0) == ["one", "two"]


@pytest.mark.parametrize(
    "path", ["/api/1.48.0/sync", "//api/sync", "/api/sync", "//api/1.2.3/sync"]
)
def test_sync_paths(server: Server, path: str) -> None:
    ws = server.ws(path)
    ws.connect()
    ws.add(0, "messages:total")
    assert ws.transition()["modifications"][0]["value"] == 0.0


def test_rust_style_paths_are_canonicalised(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.modify(add(0, "messages.js:total"), add(1, "tasks"))
    mods = {m["queryId"]: m for m in ws.transition()["modifications"]}
    assert mods[0]["value"] == 0.0
    assert mods[1]["type"] == "QueryFailed"
    assert "Could not find public function for 'tasks:default'" in mods[1]["errorMessage"]


def test_future_max_observed_timestamp_does_not_brick_the_client(server: Server) -> None:
    ws = server.ws()
    ws.connect(maxObservedTimestamp=encode_ts(2**62))
    ws.add(0, "messages:total")
    assert ws.transition()["modifications"][0]["value"] == 0.0


def test_client_clock_skew_is_echoed(server: Server) -> None:
    ws = server.ws()
    ws.connect(clientTs=time.time() * 1000 + 60_000)
    ws.add(0, "messages:total")
    skew = ws.transition()["clientClockSkew"]
    assert 50_000 < skew < 70_000


def test_events_are_accepted_and_ignored(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.send({"type": "Event", "eventType": "NetworkRecoveryReconnect", "event": {"timeSavedMs": 1}})
    ws.send({"type": "Event", "eventType": "ClientConnect", "event": None})
    ws.add(0, "messages:total")
    assert ws.transition()["modifications"][0]["value"] == 0.0


#: the keepalive interval, in ManualClock milliseconds (the clock only moves when told)
PING_MS = session_module.PING_INTERVAL_S * 1000


def wait_processed(server: Server, response: dict[str, Any], timeout: float = 5.0) -> None:
    """Until the live queries have processed the commit of a MutationResponse."""
    ts = decode_ts(response["ts"])
    deadline = time.monotonic() + timeout
    while server.app.live.processed_ts < ts:
        assert time.monotonic() < deadline, f"commit {ts} not processed within {timeout} s"
        time.sleep(0.005)


def test_ping_is_sent_after_an_idle_interval(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = make_server(clock=clock)
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:total")
    ws.transition()  # the last frame sent
    clock.advance(PING_MS - 1)
    # Idle for just under an interval: the next frame answers this, it is no Ping.
    ws.add(1, "messages:total")
    assert ws.receive()["type"] == "Transition"
    clock.advance(PING_MS + 1)
    assert ws.receive() == {"type": "Ping"}
    # Pings do not disturb the version chain.
    ws.call("messages:send", {"channel": "a", "body": "x"})
    assert ws.state.value(0) == 1.0


def test_ping_is_sent_while_results_churn_without_changing(make_server: MakeServer) -> None:
    # Commits that re-run a query without changing its result send nothing to
    # the client; those wake-ups must not count as sends for the keepalive.
    clock = ManualClock()
    server = make_server(clock=clock)
    watcher = server.ws()
    watcher.connect()
    writer = server.ws()
    writer.connect()
    doc = writer.call("messages:send", {"channel": "a", "body": "b"})["result"]
    watcher.add(0, "messages:count", {"channel": "a"})
    watcher.until(lambda m: m["type"] == "Transition")  # the watcher's last frame
    for n in range(3):
        clock.advance(PING_MS / 4)
        wait_processed(server, writer.call("messages:edit", {"id": doc, "body": f"b{n}"}))
    clock.advance(PING_MS / 4 + 1)
    assert watcher.receive() == {"type": "Ping"}, "the re-runs were taken for sends"


def test_text_frames_only(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:total")
    text = receive_text(ws)
    assert json.loads(text)["type"] == "Transition"


def test_query_set_versions_may_jump(server: Server) -> None:
    # The backend only requires base < new; the next base must be that new version.
    ws = server.ws()
    ws.connect()
    ws.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 5,
            "modifications": [add(0, "messages:total")],
        }
    )
    assert ws.transition()["endVersion"]["querySet"] == 5
    ws.query_set = 5
    ws.add(1, "messages:total")
    assert ws.transition()["endVersion"]["querySet"] == 6
