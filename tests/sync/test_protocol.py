"""The sync protocol's messages: parsing and encoding every type, exactly as on the wire."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import orjson
import pytest

from syncline.sync.protocol import (
    INITIAL_VERSION,
    NO_ERROR_DATA,
    U32_MAX,
    Action,
    ActionResponse,
    Authenticate,
    AuthErrorMessage,
    Connect,
    Event,
    FatalError,
    ModifyQuerySet,
    Mutation,
    MutationResponse,
    Ping,
    ProtocolError,
    QueryAdd,
    QueryFailed,
    QueryRemove,
    QueryRemoved,
    QueryUpdated,
    ServerMessage,
    StateVersion,
    Transition,
    decode_ts,
    encode_client_message,
    encode_server_frame,
    encode_server_message,
    encode_ts,
    parse_client_message,
    parse_server_message,
)
from syncline.values.types import Int64


def wire(msg: Any) -> dict[str, Any]:
    """A server message as the client sees it (plain JSON)."""
    return json.loads(encode_server_message(msg))


def client(obj: dict[str, Any]) -> Any:
    return parse_client_message(json.dumps(obj))


# ---------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "AAAAAAAAAAA="),
        (1, "AQAAAAAAAAA="),
        (1001, "6QMAAAAAAAA="),
        (1003, "6wMAAAAAAAA="),
        (2**64 - 1, "//////////8="),
    ],
)
def test_ts_is_padded_base64_of_8_little_endian_bytes(ts: int, text: str) -> None:
    assert encode_ts(ts) == text
    assert decode_ts(text) == ts
    assert base64.b64decode(text) == struct.pack("<Q", ts)


def test_ts_roundtrips_nanosecond_timestamps() -> None:
    ts = 1_795_253_880_312_000_000
    text = encode_ts(ts)
    assert len(text) == 12 and text.endswith("=")
    assert decode_ts(text) == ts


def test_decode_ts_accepts_the_url_safe_alphabet() -> None:
    assert decode_ts("__________8=") == 2**64 - 1
    assert decode_ts("-_________8=") == decode_ts("+/////////8=")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (5, "expected a base64 u64 string"),
        (None, "expected a base64 u64 string"),
        ("not base64!", "is not valid base64"),
        ("AAAAAAAAAAA", "is not valid base64"),  # unpadded
        ("AAAA", "expected 8 bytes of base64, got 3"),
        ("AAAAAAAAAAAAAAAA", "expected 8 bytes of base64, got 12"),
    ],
)
def test_decode_ts_rejects_malformed_timestamps(bad: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_ts(bad, "Connect.maxObservedTimestamp")
    assert str(info.value).startswith("Connect.maxObservedTimestamp:")


# ---------------------------------------------------------------------- client messages


def test_parse_connect_js_first_connect() -> None:
    msg = client(
        {
            "type": "Connect",
            "sessionId": "de16be31-3ae0-4f5d-994e-6f59754c525e",
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": 1795253880466,
        }
    )
    assert msg == Connect(
        session_id="de16be31-3ae0-4f5d-994e-6f59754c525e",
        connection_count=0,
        last_close_reason="InitialConnect",
        max_observed_timestamp=None,
        client_ts=1795253880466.0,
    )


def test_parse_connect_reconnect_with_max_observed_timestamp() -> None:
    msg = client(
        {
            "type": "Connect",
            "sessionId": "8fd5b0c1",
            "connectionCount": 1,
            "lastCloseReason": None,
            "clientTs": 0,
            "maxObservedTimestamp": "6wMAAAAAAAA=",
        }
    )
    assert isinstance(msg, Connect)
    assert msg.connection_count == 1
    assert msg.last_close_reason is None
    assert msg.max_observed_timestamp == 1003
    assert msg.client_ts == 0


def test_parse_connect_minimal() -> None:
    # Only sessionId is essential; everything else has a default.
    msg = client({"type": "Connect", "sessionId": "s"})
    assert msg == Connect("s", 0, None, None, None)


def test_parse_modify_query_set() -> None:
    msg = client(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": 1,
            "modifications": [
                {
                    "type": "Add",
                    "queryId": 0,
                    "udfPath": "tasks:list",
                    "args": [{"a": 1, "b": {"$integer": "AgAAAAAAAAA="}, "c": {"$bytes": "AQI="}}],
                },
                {
                    "type": "Add",
                    "queryId": 1,
                    "udfPath": "tasks.js:page",
                    "args": [{}],
                    "journal": "j1",
                    "componentPath": "",
                },
                {"type": "Add", "queryId": 2, "udfPath": "x:y", "args": [{}], "journal": None},
                {"type": "Remove", "queryId": 3},
            ],
        }
    )
    assert isinstance(msg, ModifyQuerySet)
    assert (msg.base_version, msg.new_version) == (0, 1)
    first, second, third, fourth = msg.modifications
    assert first == QueryAdd(0, "tasks:list", [{"a": 1.0, "b": Int64(2), "c": b"\x01\x02"}])
    # Every JSON number is a float64; int64 only arrives as $integer.
    assert type(first.args[0]["a"]) is float
    assert isinstance(first.args[0]["b"], Int64)
    assert second == QueryAdd(1, "tasks.js:page", [{}], journal="j1", component_path="")
    assert third.journal is None  # type: ignore[union-attr]
    assert fourth == QueryRemove(3)


def test_parse_mutation_and_action() -> None:
    nan_and_neg0 = {"x": {"$float": "AAAAAAAA+H8="}, "y": {"$float": "AAAAAAAAAIA="}}
    mutation = client(
        {"type": "Mutation", "requestId": 0, "udfPath": "tasks:add", "args": [nan_and_neg0]}
    )
    assert isinstance(mutation, Mutation)
    assert mutation.request_id == 0 and mutation.udf_path == "tasks:add"
    assert math.isnan(mutation.args[0]["x"])
    assert mutation.args[0]["y"] == 0.0 and math.copysign(1, mutation.args[0]["y"]) == -1
    assert mutation.component_path is None

    action = client(
        {
            "type": "Action",
            "requestId": 3,
            "udfPath": "dir/mod",
            "args": [{}],
            "componentPath": "comp",
        }
    )
    assert action == Action(3, "dir/mod", [{}], component_path="comp")


def test_parse_authenticate_variants() -> None:
    assert client(
        {"type": "Authenticate", "baseVersion": 0, "tokenType": "User", "value": "jwt"}
    ) == Authenticate(0, "User", "jwt")
    assert client({"type": "Authenticate", "baseVersion": 1, "tokenType": "None"}) == Authenticate(
        1, "None", None
    )
    # JS spells the impersonation field `impersonating`, Rust `acting_as`.
    js = client(
        {
            "type": "Authenticate",
            "baseVersion": 0,
            "tokenType": "Admin",
            "value": "key",
            "impersonating": {"subject": "u1"},
        }
    )
    rust = client(
        {
            "type": "Authenticate",
            "baseVersion": 0,
            "tokenType": "Admin",
            "value": "key",
            "acting_as": {"subject": "u1"},
        }
    )
    assert js == rust == Authenticate(0, "Admin", "key", {"subject": "u1"})


def test_parse_event_is_accepted() -> None:
    msg = client(
        {"type": "Event", "eventType": "NetworkRecoveryReconnect", "event": {"timeSavedMs": 1234}}
    )
    assert msg == Event("NetworkRecoveryReconnect", {"timeSavedMs": 1234})


def test_parse_accepts_bytes_and_ignores_unknown_fields() -> None:
    msg = parse_client_message(b'{"type":"Connect","sessionId":"s","extra":{"x":1}}')
    assert isinstance(msg, Connect)


@pytest.mark.parametrize(
    "msg",
    [
        Connect("s", 2, "InactiveServer", 1003, 12.0),
        Connect("s", 0, None),
        ModifyQuerySet(
            4,
            5,
            [
                QueryAdd(7, "a/b:c", [{"n": 1.5, "i": Int64(-2), "b": b"\x00"}], journal="j"),
                QueryRemove(6),
            ],
        ),
        Mutation(9, "tasks:add", [{"title": "x"}]),
        Action(10, "tasks", [{}]),
        Authenticate(0, "User", "token"),
        Authenticate(2, "None"),
        Authenticate(1, "Admin", "key", {"subject": "s"}),
        Event("ClientConnect", {"marks": []}),
    ],
)
def test_client_messages_roundtrip(msg: Any) -> None:
    parsed = parse_client_message(encode_client_message(msg))
    if isinstance(msg, Connect) and msg.client_ts is None:
        msg = Connect(msg.session_id, msg.connection_count, msg.last_close_reason, None, 0.0)
    assert parsed == msg


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{not json", "Invalid JSON in client message"),
        ("", "Invalid JSON in client message"),
        ("[1, 2]", "Client messages are JSON objects, got list"),
        ('"Connect"', "Client messages are JSON objects, got str"),
        ('{"sessionId": "s"}', "Unknown client message type None"),
        ('{"type": "Subscribe"}', "Unknown client message type 'Subscribe'"),
        ('{"type": "Connect"}', r"Connect.sessionId: expected a string, got None"),
        ('{"type": "Connect", "sessionId": 5}', "Connect.sessionId: expected a string, got 5"),
        (
            '{"type": "Connect", "sessionId": "s", "clientTs": "now"}',
            "Connect.clientTs: expected a number",
        ),
        (
            '{"type": "Connect", "sessionId": "s", "maxObservedTimestamp": 5}',
            "Connect.maxObservedTimestamp: expected a base64 u64 string",
        ),
        (
            '{"type": "Connect", "sessionId": "s", "connectionCount": -1}',
            "Connect.connectionCount: -1 is out of range for a u32",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1}',
            "ModifyQuerySet: missing field `modifications`",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": {}}',
            "ModifyQuerySet.modifications: expected an array",
        ),
        (
            '{"type": "ModifyQuerySet", "newVersion": 1, "modifications": []}',
            "ModifyQuerySet: missing field `baseVersion`",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": "0", "newVersion": 1, "modifications": []}',
            "ModifyQuerySet.baseVersion: expected an unsigned 32-bit integer, got '0'",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0.5, "newVersion": 1, "modifications": []}',
            "ModifyQuerySet.baseVersion: expected an unsigned 32-bit integer, got 0.5",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": true, "newVersion": 1, "modifications": []}',
            "ModifyQuerySet.baseVersion: expected an unsigned 32-bit integer, got True",
        ),
        (
            f'{{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": {U32_MAX + 1}, '
            '"modifications": []}',
            "ModifyQuerySet.newVersion: 4294967296 is out of range for a u32",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [5]}',
            r"ModifyQuerySet.modifications\[0\]: expected an object, got 5",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
            '"modifications": [{"type": "Replace", "queryId": 0}]}',
            r"ModifyQuerySet.modifications\[0\].type: expected 'Add' or 'Remove', got 'Replace'",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
            '"modifications": [{"type": "Add", "queryId": 0, "args": [{}]}]}',
            r"ModifyQuerySet.modifications\[0\].udfPath: expected a string, got None",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
            '"modifications": [{"type": "Add", "queryId": 0, "udfPath": "a:b", "args": {}}]}',
            r"ModifyQuerySet.modifications\[0\].args: expected an array of arguments, got dict",
        ),
        (
            '{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, '
            '"modifications": [{"type": "Remove"}]}',
            r"ModifyQuerySet.modifications\[0\]: missing field `queryId`",
        ),
        (
            '{"type": "Mutation", "requestId": 0, "udfPath": "a:b"}',
            "Mutation: missing field `args`",
        ),
        (
            '{"type": "Mutation", "requestId": 0, "udfPath": "a:b", "args": [{"$x": 1}]}',
            r"Mutation.args: Invalid value.*'\$x' starts with '\$'",
        ),
        (
            '{"type": "Mutation", "requestId": 0, "udfPath": "a:b", '
            '"args": [{"i": {"$integer": "AQ=="}}]}',
            "Mutation.args: Invalid value",
        ),
        (
            '{"type": "Action", "requestId": -3, "udfPath": "a:b", "args": [{}]}',
            "Action.requestId: -3 is out of range for a u32",
        ),
        ('{"type": "Action", "requestId": 1, "args": [{}]}', "Action.udfPath: expected a string"),
        (
            '{"type": "Authenticate", "baseVersion": 0, "tokenType": "Bearer", "value": "x"}',
            "Authenticate.tokenType: expected 'User', 'Admin' or 'None', got 'Bearer'",
        ),
        (
            '{"type": "Authenticate", "baseVersion": 0, "tokenType": "User"}',
            "Authenticate.value: expected a string, got None",
        ),
        (
            '{"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "k", '
            '"impersonating": "someone"}',
            "Authenticate.impersonating: expected an object",
        ),
        (
            '{"type": "Authenticate", "tokenType": "None"}',
            "Authenticate: missing field `baseVersion`",
        ),
    ],
)
def test_malformed_client_messages_raise_clear_protocol_errors(frame: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        parse_client_message(frame)
    assert info.value.code == "BadRequest"


@pytest.mark.parametrize(
    "session_id",
    ["", "x" * 65, "syncline:upload-token:abc", "a b", "é" * 10, "x" * 15_000_000],
    ids=["empty", "65-chars", "colon", "space", "non-ascii", "15-MB"],
)
def test_connect_session_ids_must_be_uuid_sized(session_id: str) -> None:
    frame = json.dumps({"type": "Connect", "sessionId": session_id})
    with pytest.raises(
        ProtocolError, match=r"Connect\.sessionId: expected a UUID-sized id"
    ) as info:
        parse_client_message(frame)
    assert len(str(info.value)) < 300  # the id is not echoed whole


@pytest.mark.parametrize(
    "session_id",
    ["de16be31-3ae0-4f5d-994e-6f59754c525e", "DE16BE313AE04F5D994E6F59754C525E", "x" * 64, "s"],
)
def test_connect_accepts_uuids_and_short_ids(session_id: str) -> None:
    frame = json.dumps({"type": "Connect", "sessionId": session_id})
    assert parse_client_message(frame).session_id == session_id  # type: ignore[union-attr]


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "1.5", "4294967296"])
def test_non_integer_or_huge_request_ids_are_protocol_errors(number: str) -> None:
    frame = '{"type": "Mutation", "requestId": NUMBER, "udfPath": "a:b"}'.replace("NUMBER", number)
    with pytest.raises(ProtocolError):
        parse_client_message(frame)


def test_error_messages_quote_client_input_briefly() -> None:
    frame = json.dumps({"type": "Mutation", "requestId": "7" * 1_000_000, "udfPath": "a:b"})
    with pytest.raises(ProtocolError, match=r"requestId: expected an unsigned") as info:
        parse_client_message(frame)
    assert len(str(info.value)) < 300


# ---------------------------------------------------------------------- server messages


def test_transition_encoding() -> None:
    msg = Transition(
        INITIAL_VERSION,
        StateVersion(1, 0, 1001),
        [
            QueryUpdated(0, {"n": 1.0, "big": Int64(-2)}, ["[LOG] 'query ran'"]),
            QueryFailed(1, "Server Error\nUncaught Error: boom", []),
            QueryFailed(2, "Uncaught ConvexError: qdata", [], error_data={"why": "x"}),
            QueryRemoved(3),
        ],
        client_clock_skew=-12.0,
        server_ts=1795253880312000000,
    )
    assert wire(msg) == {
        "type": "Transition",
        "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
        "endVersion": {"querySet": 1, "identity": 0, "ts": "6QMAAAAAAAA="},
        "modifications": [
            {
                "type": "QueryUpdated",
                "queryId": 0,
                "value": {"n": 1.0, "big": {"$integer": "/v////////8="}},
                "logLines": ["[LOG] 'query ran'"],
                "journal": None,
            },
            {
                "type": "QueryFailed",
                "queryId": 1,
                "errorMessage": "Server Error\nUncaught Error: boom",
                "logLines": [],
                "journal": None,
            },
            {
                "type": "QueryFailed",
                "queryId": 2,
                "errorMessage": "Uncaught ConvexError: qdata",
                "logLines": [],
                "journal": None,
                "errorData": {"why": "x"},
            },
            {"type": "QueryRemoved", "queryId": 3},
        ],
        "clientClockSkew": -12.0,
        "serverTs": 1795253880312000000,
    }


def test_transition_without_optional_fields() -> None:
    out = wire(Transition(INITIAL_VERSION, INITIAL_VERSION, []))
    assert out == {
        "type": "Transition",
        "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
        "endVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
        "modifications": [],
    }


def test_query_updated_always_has_journal_and_log_lines() -> None:
    mods = [
        QueryUpdated(0, None),
        QueryUpdated(1, "x", ["[LOG] a"], journal="cursor"),
        QueryFailed(2, "boom"),
    ]
    out = wire(Transition(INITIAL_VERSION, StateVersion(1, 0, 5), mods))["modifications"]
    assert out[0] == {
        "type": "QueryUpdated",
        "queryId": 0,
        "value": None,
        "logLines": [],
        "journal": None,
    }
    assert out[1]["journal"] == "cursor" and out[1]["logLines"] == ["[LOG] a"]
    assert out[2]["journal"] is None and out[2]["logLines"] == []
    assert "errorData" not in out[2]


def test_error_data_is_present_only_for_convex_errors() -> None:
    # Present-but-null is a ConvexError with null data; absent is a plain error.
    null_data = wire(
        Transition(INITIAL_VERSION, INITIAL_VERSION, [QueryFailed(0, "e", error_data=None)])
    )
    assert null_data["modifications"][0]["errorData"] is None
    plain = wire(Transition(INITIAL_VERSION, INITIAL_VERSION, [QueryFailed(0, "e")]))
    assert "errorData" not in plain["modifications"][0]

    assert "errorData" not in wire(MutationResponse(1, False, "boom"))
    assert wire(MutationResponse(1, False, "bad", error_data={"reason": "bad"}))["errorData"] == {
        "reason": "bad"
    }
    assert wire(MutationResponse(1, False, "bad", error_data=None))["errorData"] is None
    assert "errorData" not in wire(ActionResponse(2, False, "boom"))
    assert wire(ActionResponse(2, False, "no", error_data="no"))["errorData"] == "no"
    # Never on success, whatever the caller passed.
    assert "errorData" not in wire(MutationResponse(1, True, None, ts=5, error_data={"x": 1.0}))


def test_mutation_response_encoding() -> None:
    assert wire(MutationResponse(0, True, Int64(42), ts=1003, log_lines=["[INFO] ran"])) == {
        "type": "MutationResponse",
        "requestId": 0,
        "success": True,
        "result": {"$integer": "KgAAAAAAAAA="},
        "ts": "6wMAAAAAAAA=",
        "logLines": ["[INFO] ran"],
    }
    # void result -> null; failure -> message string and ts null
    assert wire(MutationResponse(1, True, None, ts=0))["result"] is None
    failed = wire(MutationResponse(2, False, "Server Error\nUncaught ConvexError: bad"))
    assert failed == {
        "type": "MutationResponse",
        "requestId": 2,
        "success": False,
        "result": "Server Error\nUncaught ConvexError: bad",
        "ts": None,
        "logLines": [],
    }
    # A failure never carries a ts, even if one was given.
    assert wire(MutationResponse(3, False, "x", ts=99))["ts"] is None


def test_action_response_encoding_has_no_ts() -> None:
    assert wire(ActionResponse(2, True, "action-ok")) == {
        "type": "ActionResponse",
        "requestId": 2,
        "success": True,
        "result": "action-ok",
        "logLines": [],
    }
    assert wire(ActionResponse(5, False, "boom", ["[ERROR] x"])) == {
        "type": "ActionResponse",
        "requestId": 5,
        "success": False,
        "result": "boom",
        "logLines": ["[ERROR] x"],
    }


def test_auth_error_fatal_error_and_ping_encoding() -> None:
    assert wire(AuthErrorMessage("Could not verify token", 0, True)) == {
        "type": "AuthError",
        "error": "Could not verify token",
        "baseVersion": 0,
        "authUpdateAttempted": True,
    }
    assert wire(AuthErrorMessage("expired", 3, False))["authUpdateAttempted"] is False
    assert wire(FatalError("bad")) == {"type": "FatalError", "error": "bad"}
    assert encode_server_message(Ping()) == '{"type":"Ping"}'


def test_floats_are_encoded_with_a_decimal_point() -> None:
    text = encode_server_message(
        Transition(
            INITIAL_VERSION,
            INITIAL_VERSION,
            [QueryUpdated(0, {"a": 2.0, "b": [0.0, 1e20, 3.0]})],
        )
    )
    assert '"a":2.0' in text
    assert "[0.0,1e+20,3.0]" in text
    assert '"result":1.0' in encode_server_message(MutationResponse(0, True, 1.0, ts=1))
    assert '"result":7.0' in encode_server_message(ActionResponse(0, True, 7.0))


def test_special_floats_use_float_encoding() -> None:
    out = wire(MutationResponse(0, True, [float("nan"), -0.0, float("inf"), -math.inf], ts=1))
    assert out["result"] == [
        {"$float": "AAAAAAAA+H8="},
        {"$float": "AAAAAAAAAIA="},
        {"$float": "AAAAAAAA8H8="},
        {"$float": "AAAAAAAA8P8="},
    ]


def test_pre_encoded_values_are_sent_verbatim() -> None:
    # A live query's result is encoded once and shared by every subscriber.
    fragment = orjson.Fragment(b'{"shared":1.0}')
    out = wire(Transition(INITIAL_VERSION, INITIAL_VERSION, [QueryUpdated(0, fragment)]))
    assert out["modifications"][0]["value"] == {"shared": 1.0}


@pytest.mark.parametrize(
    "msg",
    [
        Transition(
            StateVersion(1, 2, 3),
            StateVersion(2, 2, 2**63),
            [
                QueryUpdated(0, {"x": [1.0, b"\x00", Int64(5)]}, ["[LOG] a"], "j"),
                QueryFailed(1, "err", ["[WARN] b"], None, NO_ERROR_DATA),
                QueryFailed(2, "err", [], None, {"why": "x"}),
                QueryRemoved(3),
            ],
            client_clock_skew=3.0,
            server_ts=10,
        ),
        MutationResponse(0, True, {"id": "abc"}, 1003, ["[LOG] x"]),
        MutationResponse(1, False, "boom", None, [], NO_ERROR_DATA),
        MutationResponse(2, False, "bad", None, [], {"code": "X"}),
        ActionResponse(3, True, None, []),
        ActionResponse(4, False, "bad", [], "data"),
        AuthErrorMessage("nope", 1, False),
        FatalError("fatal"),
        Ping(),
    ],
)
def test_server_messages_roundtrip(msg: Any) -> None:
    assert parse_server_message(encode_server_message(msg)) == msg


def test_every_server_message_has_a_known_type() -> None:
    kinds = {
        wire(m)["type"]
        for m in (
            Transition(INITIAL_VERSION, INITIAL_VERSION, []),
            MutationResponse(0, True, None, 1),
            ActionResponse(0, True, None),
            AuthErrorMessage("x", 0, True),
            FatalError("x"),
            Ping(),
        )
    }
    assert kinds == {
        "Transition",
        "MutationResponse",
        "ActionResponse",
        "AuthError",
        "FatalError",
        "Ping",
    }


def test_parse_server_message_rejects_garbage() -> None:
    with pytest.raises(ProtocolError, match="Invalid JSON in server message"):
        parse_server_message("{")
    with pytest.raises(ProtocolError, match="Unknown server message type 'Hello'"):
        parse_server_message('{"type": "Hello"}')
    with pytest.raises(ProtocolError, match="Unknown state modification 'QueryMoved'"):
        parse_server_message(
            json.dumps(
                {
                    "type": "Transition",
                    "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
                    "endVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
                    "modifications": [{"type": "QueryMoved", "queryId": 1}],
                }
            )
        )
    with pytest.raises(ProtocolError, match=r"Transition.endVersion.ts"):
        parse_server_message(
            json.dumps(
                {
                    "type": "Transition",
                    "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
                    "endVersion": {"querySet": 0, "identity": 0},
                    "modifications": [],
                }
            )
        )


def test_no_error_data_is_one_marker_for_the_server_and_the_client() -> None:
    from syncline import errors
    from syncline.sync import protocol

    assert protocol.NO_ERROR_DATA is errors.NO_ERROR_DATA
    assert not errors.NO_ERROR_DATA and repr(errors.NO_ERROR_DATA) == "NO_ERROR_DATA"


def test_encoded_frames_are_the_encoded_messages_as_utf8() -> None:
    value = orjson.Fragment(b'{"a":[1,"\\u00e9t\\u00e9"]}')
    messages: list[ServerMessage] = [
        Ping(),
        MutationResponse(3, True, "été", ts=7, log_lines=["[LOG] x"]),
        MutationResponse(4, False, "boom", None),
        Transition(
            StateVersion(0, 0, 0),
            StateVersion(1, 0, 9),
            [QueryUpdated(0, value), QueryRemoved(1)],
            server_ts=5,
        ),
    ]
    for message in messages:
        frame = encode_server_frame(message)
        assert isinstance(frame, bytes)
        assert frame == encode_server_message(message).encode()
