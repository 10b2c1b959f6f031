"""Authentication on the sync WebSocket: custom JWT provider with an inline JWKS, admin keys."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.conftest import (
    ADMIN_KEY,
    ISSUER,
    Keys,
    MakeServer,
    Server,
    WsClient,
    add,
    auth_files,
)
from syncline.clock import ManualClock
from syncline.sync.protocol import decode_ts


@pytest.fixture
def server(make_server: MakeServer, keys: Keys) -> Server:
    return make_server(auth_files(keys))


def watching_me(server: Server) -> WsClient:
    """A connection subscribed to ``who:me`` (q0) and a query that ignores auth (q1)."""
    ws = server.ws()
    ws.connect()
    ws.modify(add(0, "who:me"), add(1, "messages:count", {"channel": "a"}))
    ws.transition()
    assert ws.state.results == {0: ("ok", None), 1: ("ok", 0.0)}
    return ws


def test_valid_token_bumps_identity_and_reruns_queries_in_that_transition(
    server: Server, keys: Keys
) -> None:
    ws = watching_me(server)
    ws.authenticate("User", keys.token("user-a"))
    msg = ws.transition()
    assert msg["startVersion"]["identity"] == 0
    assert msg["endVersion"]["identity"] == 1
    assert msg["endVersion"]["querySet"] == msg["startVersion"]["querySet"] == 1
    # The auth-reading query is re-run as the new caller in the same Transition; the
    # other one's result did not change and is not re-sent.
    assert [(m["queryId"], m["value"]) for m in msg["modifications"]] == [(0, "user-a")]
    # Mutations run as the caller too.
    response = ws.call("whoami:token_identifier")
    assert response["result"] == f"{ISSUER}|user-a"


def test_custom_claims_reach_the_identity(server: Server, keys: Keys) -> None:
    ws = server.ws()
    ws.connect()
    ws.authenticate("User", keys.token("user-a", name="Ada"))
    ws.add(0, "whoami:name")
    ws.until(lambda m: 0 in ws.state.results)
    assert ws.state.value(0) == "Ada"
    assert ws.state.version["identity"] == 1


def test_expired_token_is_rejected_then_closed(server: Server, keys: Keys) -> None:
    ws = watching_me(server)
    ws.authenticate("User", keys.token(now=time.time() - 7200))
    last, closed = ws.expect_close()
    assert last is not None
    assert last["type"] == "AuthError"
    assert last["baseVersion"] == 0
    assert last["authUpdateAttempted"] is True
    assert "expired" in last["error"]
    assert closed.code in (1000, 1005, None)
    # AuthError is the last message, and answers the Authenticate's base version.
    assert ws.state.version["identity"] == 0


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda k: k.token(iss="https://elsewhere.test"), "no auth provider matches the token"),
        (lambda k: k.token(aud="other-app"), "wrong audience"),
        (lambda k: k.token(key=k.stranger), "bad signature"),
        (lambda k: k.token(kid="k9"), "unknown key id 'k9'"),
        (lambda k: "not.a.jwt", "malformed token"),
        (lambda k: k.token(now=time.time() + 3600), "issued in the future"),
    ],
    ids=["issuer", "audience", "signature", "kid", "garbage", "future"],
)
def test_rejected_tokens_name_the_reason(
    server: Server, keys: Keys, make_token: Any, reason: str
) -> None:
    ws = watching_me(server)
    ws.authenticate("User", keys.token("user-a"))
    ws.transition()
    ws.authenticate("User", make_token(keys))
    last, _closed = ws.expect_close()
    assert last is not None and last["type"] == "AuthError", last
    assert reason in last["error"]
    assert last["baseVersion"] == 1  # the identity version it tried to change from
    assert last["authUpdateAttempted"] is True


def test_logout_bumps_identity_and_result_becomes_null(server: Server, keys: Keys) -> None:
    ws = watching_me(server)
    ws.authenticate("User", keys.token("user-a"))
    ws.transition()
    assert ws.state.value(0) == "user-a"
    ws.authenticate("None")
    msg = ws.transition()
    assert (msg["startVersion"]["identity"], msg["endVersion"]["identity"]) == (1, 2)
    assert [(m["queryId"], m["value"]) for m in msg["modifications"]] == [(0, None)]
    assert ws.state.value(1) == 0.0


def test_token_swap_on_a_live_connection(server: Server, keys: Keys) -> None:
    ws = watching_me(server)
    ws.authenticate("User", keys.token("user-a"))
    ws.transition()
    ws.authenticate("User", keys.token("user-b"))
    msg = ws.transition()
    assert msg["endVersion"]["identity"] == 2
    assert ws.state.value(0) == "user-b"
    # Queries that ignore auth keep updating after the swap.
    ws.call("messages:send", {"channel": "a", "body": "x"})
    assert ws.state.value(1) == 1.0
    assert ws.call("whoami:token_identifier")["result"] == f"{ISSUER}|user-b"


def test_authenticate_then_subscribe_in_one_go(server: Server, keys: Keys) -> None:
    # JS sends Authenticate first, then the ModifyQuerySet, without waiting.
    ws = server.ws()
    ws.connect()
    ws.authenticate("User", keys.token("user-a"))
    ws.add(0, "who:me")
    ws.until(lambda m: (ws.state.version["querySet"], ws.state.version["identity"]) == (1, 1))
    assert ws.state.value(0) == "user-a"
    for transition in ws.state.transitions:
        # No Transition may show the query's result under the wrong identity.
        for mod in transition["modifications"]:
            assert mod.get("value") == "user-a"


def test_admin_key(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "who:me")
    ws.transition()
    ws.authenticate("Admin", ADMIN_KEY)
    msg = ws.transition()
    assert msg["endVersion"]["identity"] == 1
    # The admin may subscribe to internal functions.
    ws.add(1, "messages:secret")
    ws.transition()
    assert ws.state.value(1) == "internal only"
    assert ws.state.value(0) is None
    # Acting as a user (JS `impersonating`, Rust `acting_as`).
    ws.authenticate("Admin", ADMIN_KEY, impersonating={"issuer": ISSUER, "subject": "impersonated"})
    ws.transition()
    assert ws.state.value(0) == "impersonated"
    ws.authenticate("Admin", ADMIN_KEY, acting_as={"issuer": ISSUER, "subject": "rusty"})
    ws.transition()
    assert ws.state.value(0) == "rusty"


def test_internal_functions_need_the_admin_key(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.add(0, "messages:secret")
    msg = ws.transition()["modifications"][0]
    assert msg["type"] == "QueryFailed"
    assert "Could not find public function for 'messages:secret'" in msg["errorMessage"]


def test_wrong_admin_key_is_rejected(server: Server) -> None:
    ws = server.ws()
    ws.connect()
    ws.authenticate("Admin", "not-the-key")
    last, _closed = ws.expect_close()
    assert last is not None and last["type"] == "AuthError"
    assert "admin key is not valid" in last["error"]
    assert last["baseVersion"] == 0 and last["authUpdateAttempted"] is True


def test_queries_that_ignore_auth_are_shared_between_identities(server: Server, keys: Keys) -> None:
    connections = []
    for subject in ("user-a", "user-b"):
        ws = server.ws()
        ws.connect()
        ws.authenticate("User", keys.token(subject))
        ws.add(0, "messages:count", {"channel": "a"})
        ws.until(lambda m, ws=ws: 0 in ws.state.results)
        connections.append(ws)
    assert len(server.app.live) == 1
    # Queries that read auth are per identity.
    for ws in connections:
        ws.add(1, "who:me")
        ws.until(lambda m, ws=ws: 1 in ws.state.results)
    assert [ws.state.value(1) for ws in connections] == ["user-a", "user-b"]
    assert len(server.app.live) == 3
    # The shared query still updates everyone.
    first, second = connections
    response = first.call("messages:send", {"channel": "a", "body": "x"})
    assert first.state.value(0) == 1.0
    second.until(lambda m: second.state.value(0) == 1.0)
    assert second.state.ts >= decode_ts(response["ts"])


def test_identity_shared_query_survives_reauthentication(server: Server, keys: Keys) -> None:
    # A query that ignores auth is the same live query before and after an Authenticate;
    # it must keep receiving updates.
    ws = watching_me(server)
    for subject in ("user-a", "user-b"):
        ws.authenticate("User", keys.token(subject))
        ws.transition()
    ws.authenticate("None")
    ws.transition()
    writer = server.ws()
    writer.connect()
    writer.call("messages:send", {"channel": "a", "body": "x"})
    ws.until(lambda m: ws.state.results[1] == ("ok", 1.0))


def test_token_expiring_on_a_live_connection(make_server: MakeServer, keys: Keys) -> None:
    clock = ManualClock(start_ms=time.time() * 1000)
    server = make_server(auth_files(keys), clock=clock)
    ws = watching_me(server)
    ws.authenticate("User", keys.token(now=clock.now_ms() / 1000, lifetime_s=60))
    ws.transition()
    clock.advance(120_000)
    ws.mutation("messages:send", {"channel": "a", "body": "late"})
    last, _closed = ws.expect_close()
    assert last is not None and last["type"] == "AuthError"
    assert last["authUpdateAttempted"] is False
    assert last["baseVersion"] == 1
    assert "expired" in last["error"].lower()
    # The mutation did not run.
    ws2 = server.ws()
    ws2.connect()
    ws2.add(0, "messages:count", {"channel": "a"})
    ws2.transition()
    assert ws2.state.value(0) == 0.0


def test_token_expiring_before_a_query_update(make_server: MakeServer, keys: Keys) -> None:
    clock = ManualClock(start_ms=time.time() * 1000)
    server = make_server(auth_files(keys), clock=clock)
    ws = watching_me(server)
    ws.authenticate("User", keys.token(now=clock.now_ms() / 1000, lifetime_s=60))
    ws.transition()
    clock.advance(120_000)
    writer = server.ws()
    writer.connect()
    writer.call("messages:send", {"channel": "a", "body": "x"})
    # The subscriber's count(a) changed, but its token has expired: no Transition.
    last, _closed = ws.expect_close()
    assert last is not None and last["type"] == "AuthError", last
    assert last["authUpdateAttempted"] is False
    assert ws.state.value(1) == 0.0


def test_token_expiring_before_an_action(make_server: MakeServer, keys: Keys) -> None:
    clock = ManualClock(start_ms=time.time() * 1000)
    server = make_server(auth_files(keys), clock=clock)
    ws = server.ws()
    ws.connect()
    ws.authenticate("User", keys.token(now=clock.now_ms() / 1000, lifetime_s=60))
    ws.transition()
    ws.action("messages:double", {"x": 1})
    assert ws.expect("ActionResponse")["success"] is True
    clock.advance(120_000)
    ws.action("messages:double", {"x": 1})
    last, _closed = ws.expect_close()
    assert last is not None and last["type"] == "AuthError", last
    assert last["authUpdateAttempted"] is False


def test_queued_mutations_run_as_the_identity_they_were_sent_with(
    server: Server, keys: Keys
) -> None:
    # Messages are processed in arrival order: mutations sent before an Authenticate
    # run as the caller of that moment, even if they are still queued when it arrives.
    ws = server.ws()
    ws.connect()
    ws.authenticate("User", keys.token("user-a"))
    ws.transition()
    # The first one keeps the writer busy while the others wait in the queue.
    before = [ws.mutation("whoami:slow_token_identifier")]
    before += [ws.mutation("whoami:token_identifier") for _ in range(5)]
    ws.authenticate("User", keys.token("user-b"))
    after = [ws.mutation("whoami:token_identifier") for _ in range(3)]
    ws.authenticate("None")
    anonymous = ws.mutation("whoami:token_identifier")
    seen = ws.until(lambda m: m["type"] == "MutationResponse" and m["requestId"] == anonymous)
    results = {m["requestId"]: m["result"] for m in seen if m["type"] == "MutationResponse"}
    assert [results[r] for r in before] == [f"{ISSUER}|user-a"] * len(before)
    assert [results[r] for r in after] == [f"{ISSUER}|user-b"] * len(after)
    assert results[anonymous] is None


def test_js_style_reconnect(server: Server, keys: Keys) -> None:
    # What a JS client does after losing its socket: same sessionId, re-auth from
    # identity 0, the whole query set as 0 -> 1 (with journals), in-flight mutations
    # re-sent with their request ids.
    token = keys.token("user-a")
    first = server.ws()
    session_id = first.connect()
    first.authenticate("User", token)
    first.modify(add(0, "who:me"), add(1, "messages:count", {"channel": "a"}))
    request_id = first.mutation("messages:send", {"channel": "a", "body": "once"})
    response = first.until(lambda m: m["type"] == "MutationResponse")[-1]
    first.session.close()

    second = server.ws()
    second.connect(
        session_id,
        connectionCount=1,
        lastCloseReason="InactiveServer",
        maxObservedTimestamp=response["ts"],
    )
    second.authenticate("User", token)
    second.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {**add(0, "who:me"), "journal": None},
                {**add(1, "messages:count", {"channel": "a"}), "journal": None},
            ],
        }
    )
    second.query_set = 1
    second.mutation("messages:send", {"channel": "a", "body": "once"}, request_id=request_id)
    replay = second.until(lambda m: m["type"] == "MutationResponse")[-1]
    assert (replay["result"], replay["ts"]) == (response["result"], response["ts"])
    second.settle_after(replay)
    assert (second.state.version["querySet"], second.state.version["identity"]) == (1, 1)
    assert second.state.results == {0: ("ok", "user-a"), 1: ("ok", 1.0)}
