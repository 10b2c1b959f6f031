"""The Convex sync protocol's messages, parsed and encoded. Pure: no I/O.

Every frame is one JSON text with a ``"type"``. Field names are exact (see the
protocol reference); values inside ``args``, ``value``, ``result`` and
``errorData`` are convex-encoded JSON; timestamps are u64 as padded standard
base64 of 8 little-endian bytes.

``parse_client_message`` is strict: anything malformed raises
:class:`ProtocolError` with a message naming the field, what was expected and
what arrived. ``encode_server_message`` never emits an unknown message type.
Encoded values may be passed pre-serialized as :class:`orjson.Fragment`, so a
result shared by many subscribers is encoded once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import orjson

from syncline.errors import NO_ERROR_DATA as NO_ERROR_DATA  # re-exported for the client
from syncline.errors import InvalidRequest
from syncline.values.json import from_json, to_json

U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1

#: ``Connect.sessionId``: the official clients send a UUID; it is stored with every
#: mutation for de-duplication, so anything much longer than one is refused.
MAX_SESSION_ID_LENGTH: Final = 64
_SESSION_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_SESSION_ID_LENGTH}}}")


class ProtocolError(InvalidRequest):
    code = "BadRequest"


def _show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages echo client input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def encode_ts(ts: int) -> str:
    return _encode_ts(ts)


@functools.lru_cache(maxsize=64)
def _encode_ts(ts: int) -> str:
    # One commit's ts is encoded for every session it reaches: remember the recent ones.
    return base64.b64encode(struct.pack("<Q", ts)).decode("ascii")


def decode_ts(text: object, what: str = "ts") -> int:
    if not isinstance(text, str):
        raise ProtocolError(f"{what}: expected a base64 u64 string, got {_show(text)}")
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{what}: {_show(text)} is not valid base64") from None
    if len(raw) != 8:
        raise ProtocolError(f"{what}: expected 8 bytes of base64, got {len(raw)}")
    return int(struct.unpack("<Q", raw)[0])


# ---------------------------------------------------------------------- client messages


@dataclass(frozen=True, slots=True)
class Connect:
    session_id: str
    connection_count: int
    last_close_reason: str | None
    max_observed_timestamp: int | None = None
    client_ts: float | None = None


@dataclass(frozen=True, slots=True)
class QueryAdd:
    query_id: int
    udf_path: str
    args: list[Any]
    journal: str | None = None
    component_path: str | None = None


@dataclass(frozen=True, slots=True)
class QueryRemove:
    query_id: int


@dataclass(frozen=True, slots=True)
class ModifyQuerySet:
    base_version: int
    new_version: int
    modifications: list[QueryAdd | QueryRemove]


@dataclass(frozen=True, slots=True)
class Mutation:
    request_id: int
    udf_path: str
    args: list[Any]
    component_path: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    request_id: int
    udf_path: str
    args: list[Any]
    component_path: str | None = None


@dataclass(frozen=True, slots=True)
class Authenticate:
    base_version: int
    token_type: Literal["User", "Admin", "None"]
    value: str | None = None
    #: admin impersonation attributes (JS sends ``impersonating``, Rust ``acting_as``)
    impersonating: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    event_type: str
    event: Any = None


ClientMessage: TypeAlias = Connect | ModifyQuerySet | Mutation | Action | Authenticate | Event


def _get(obj: dict[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"{what}: missing field `{key}`")
    return obj[key]


def _u32(obj: dict[str, Any], key: str, what: str) -> int:
    value = _get(obj, key, what)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ProtocolError(
            f"{what}.{key}: expected an unsigned 32-bit integer, got {_show(value)}"
        )
    if not 0 <= value <= U32_MAX:
        raise ProtocolError(f"{what}.{key}: {_show(value)} is out of range for a u32")
    return int(value)


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{what}.{key}: expected a string, got {_show(value)}")
    return value


def _optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key, what)


def _session_id(obj: dict[str, Any]) -> str:
    value = _str(obj, "sessionId", "Connect")
    if not _SESSION_ID.fullmatch(value):
        raise ProtocolError(
            "Connect.sessionId: expected a UUID-sized id (1 to "
            f"{MAX_SESSION_ID_LENGTH} letters, digits, '-' or '_'), got {_show(value)}"
        )
    return value


def _args(obj: dict[str, Any], what: str) -> list[Any]:
    raw = _get(obj, "args", what)
    if not isinstance(raw, list):
        raise ProtocolError(
            f"{what}.args: expected an array of arguments, got {type(raw).__name__}"
        )
    try:
        return [from_json(item) for item in raw]
    except InvalidRequest as exc:
        raise ProtocolError(f"{what}.args: {exc}") from None


def _parse_modification(raw: Any, index: int) -> QueryAdd | QueryRemove:
    what = f"ModifyQuerySet.modifications[{index}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what}: expected an object, got {_show(raw)}")
    kind = raw.get("type")
    if kind == "Add":
        return QueryAdd(
            query_id=_u32(raw, "queryId", what),
            udf_path=_str(raw, "udfPath", what),
            args=_args(raw, what),
            journal=_optional_str(raw, "journal", what),
            component_path=_optional_str(raw, "componentPath", what),
        )
    if kind == "Remove":
        return QueryRemove(query_id=_u32(raw, "queryId", what))
    raise ProtocolError(f"{what}.type: expected 'Add' or 'Remove', got {_show(kind)}")


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Parse one client frame. Raises ProtocolError for anything malformed."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"Invalid JSON in client message: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"Client messages are JSON objects, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "Connect":
        max_ts = obj.get("maxObservedTimestamp")
        client_ts = obj.get("clientTs")
        if client_ts is not None and (
            isinstance(client_ts, bool) or not isinstance(client_ts, int | float)
        ):
            raise ProtocolError(f"Connect.clientTs: expected a number, got {_show(client_ts)}")
        reason = obj.get("lastCloseReason")
        return Connect(
            session_id=_session_id(obj),
            connection_count=_u32(obj, "connectionCount", "Connect")
            if "connectionCount" in obj
            else 0,
            last_close_reason=reason if isinstance(reason, str) else None,
            max_observed_timestamp=None
            if max_ts is None
            else decode_ts(max_ts, "Connect.maxObservedTimestamp"),
            client_ts=None if client_ts is None else float(client_ts),
        )
    if kind == "ModifyQuerySet":
        mods = _get(obj, "modifications", "ModifyQuerySet")
        if not isinstance(mods, list):
            raise ProtocolError("ModifyQuerySet.modifications: expected an array")
        return ModifyQuerySet(
            base_version=_u32(obj, "baseVersion", "ModifyQuerySet"),
            new_version=_u32(obj, "newVersion", "ModifyQuerySet"),
            modifications=[_parse_modification(m, i) for i, m in enumerate(mods)],
        )
    if kind in ("Mutation", "Action"):
        cls = Mutation if kind == "Mutation" else Action
        return cls(
            request_id=_u32(obj, "requestId", kind),
            udf_path=_str(obj, "udfPath", kind),
            args=_args(obj, kind),
            component_path=_optional_str(obj, "componentPath", kind),
        )
    if kind == "Authenticate":
        token_type = obj.get("tokenType")
        if token_type not in ("User", "Admin", "None"):
            raise ProtocolError(
                f"Authenticate.tokenType: expected 'User', 'Admin' or 'None', got {_show(token_type)}"
            )
        value = None if token_type == "None" else _str(obj, "value", "Authenticate")
        acting = obj.get("impersonating", obj.get("acting_as"))
        if acting is not None and not isinstance(acting, dict):
            raise ProtocolError("Authenticate.impersonating: expected an object")
        return Authenticate(
            base_version=_u32(obj, "baseVersion", "Authenticate"),
            token_type=token_type,
            value=value,
            impersonating=acting,
        )
    if kind == "Event":
        return Event(event_type=str(obj.get("eventType", "")), event=obj.get("event"))
    raise ProtocolError(f"Unknown client message type {_show(kind)}")


def encode_client_message(msg: ClientMessage) -> str:
    """Encode a client message (used by Syncline's own Python client and tests)."""
    obj: dict[str, Any]
    if isinstance(msg, Connect):
        obj = {
            "type": "Connect",
            "sessionId": msg.session_id,
            "connectionCount": msg.connection_count,
            "lastCloseReason": msg.last_close_reason,
            "clientTs": msg.client_ts if msg.client_ts is not None else 0,
        }
        if msg.max_observed_timestamp is not None:
            obj["maxObservedTimestamp"] = encode_ts(msg.max_observed_timestamp)
    elif isinstance(msg, ModifyQuerySet):
        mods: list[dict[str, Any]] = []
        for m in msg.modifications:
            if isinstance(m, QueryAdd):
                add: dict[str, Any] = {
                    "type": "Add",
                    "queryId": m.query_id,
                    "udfPath": m.udf_path,
                    "args": [to_json(a) for a in m.args],
                }
                if m.journal is not None:
                    add["journal"] = m.journal
                mods.append(add)
            else:
                mods.append({"type": "Remove", "queryId": m.query_id})
        obj = {
            "type": "ModifyQuerySet",
            "baseVersion": msg.base_version,
            "newVersion": msg.new_version,
            "modifications": mods,
        }
    elif isinstance(msg, Mutation | Action):
        obj = {
            "type": "Mutation" if isinstance(msg, Mutation) else "Action",
            "requestId": msg.request_id,
            "udfPath": msg.udf_path,
            "args": [to_json(a) for a in msg.args],
        }
    elif isinstance(msg, Authenticate):
        obj = {"type": "Authenticate", "baseVersion": msg.base_version, "tokenType": msg.token_type}
        if msg.value is not None:
            obj["value"] = msg.value
        if msg.impersonating is not None:
            obj["impersonating"] = msg.impersonating
    else:
        obj = {"type": "Event", "eventType": msg.event_type, "event": msg.event}
    return orjson.dumps(obj).decode()


# ---------------------------------------------------------------------- server messages


@dataclass(frozen=True, slots=True)
class StateVersion:
    query_set: int
    identity: int
    ts: int

    def to_json(self) -> dict[str, Any]:
        return {"querySet": self.query_set, "identity": self.identity, "ts": encode_ts(self.ts)}


INITIAL_VERSION: Final = StateVersion(0, 0, 0)


@dataclass(slots=True)
class QueryUpdated:
    query_id: int
    #: a value, or its wire JSON already serialized (``orjson.Fragment``)
    value: Any
    log_lines: list[str] = field(default_factory=list)
    journal: str | None = None


@dataclass(slots=True)
class QueryFailed:
    query_id: int
    error_message: str
    log_lines: list[str] = field(default_factory=list)
    journal: str | None = None
    error_data: Any = NO_ERROR_DATA


@dataclass(slots=True)
class QueryRemoved:
    query_id: int


StateModification: TypeAlias = QueryUpdated | QueryFailed | QueryRemoved


@dataclass(slots=True)
class Transition:
    start_version: StateVersion
    end_version: StateVersion
    modifications: list[StateModification]
    client_clock_skew: float | None = None
    server_ts: int | None = None


@dataclass(frozen=True, slots=True)
class MutationResponse:
    request_id: int
    success: bool
    #: the encoded return value on success; the error message on failure
    result: Any
    ts: int | None = None
    log_lines: list[str] = field(default_factory=list)
    error_data: Any = NO_ERROR_DATA


@dataclass(frozen=True, slots=True)
class ActionResponse:
    request_id: int
    success: bool
    result: Any
    log_lines: list[str] = field(default_factory=list)
    error_data: Any = NO_ERROR_DATA


@dataclass(frozen=True, slots=True)
class AuthErrorMessage:
    error: str
    base_version: int
    auth_update_attempted: bool


@dataclass(frozen=True, slots=True)
class FatalError:
    error: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ServerMessage: TypeAlias = (
    Transition | MutationResponse | ActionResponse | AuthErrorMessage | FatalError | Ping
)


def _value(value: Any) -> Any:
    return value if isinstance(value, orjson.Fragment) else to_json(value)


def _modification(m: StateModification) -> dict[str, Any]:
    if type(m) is QueryUpdated:
        value = m.value
        return {
            "type": "QueryUpdated",
            "queryId": m.query_id,
            "value": value if type(value) is orjson.Fragment else to_json(value),
            "logLines": m.log_lines,
            "journal": m.journal,
        }
    if isinstance(m, QueryFailed):
        out: dict[str, Any] = {
            "type": "QueryFailed",
            "queryId": m.query_id,
            "errorMessage": m.error_message,
            "logLines": m.log_lines,
            "journal": m.journal,
        }
        if m.error_data is not NO_ERROR_DATA:
            out["errorData"] = _value(m.error_data)
        return out
    return {"type": "QueryRemoved", "queryId": m.query_id}


def server_message_to_json(msg: ServerMessage) -> dict[str, Any]:
    if type(msg) is Transition:
        # Built for every session a commit reaches: no method call per part.
        start, end = msg.start_version, msg.end_version
        obj: dict[str, Any] = {
            "type": "Transition",
            "startVersion": {
                "querySet": start.query_set,
                "identity": start.identity,
                "ts": _encode_ts(start.ts),
            },
            "endVersion": {
                "querySet": end.query_set,
                "identity": end.identity,
                "ts": _encode_ts(end.ts),
            },
            "modifications": [_modification(m) for m in msg.modifications],
        }
        if msg.client_clock_skew is not None:
            obj["clientClockSkew"] = msg.client_clock_skew
        if msg.server_ts is not None:
            obj["serverTs"] = msg.server_ts
        return obj
    if isinstance(msg, MutationResponse | ActionResponse):
        is_mutation = isinstance(msg, MutationResponse)
        obj = {
            "type": "MutationResponse" if is_mutation else "ActionResponse",
            "requestId": msg.request_id,
            "success": msg.success,
            "result": _value(msg.result) if msg.success else str(msg.result),
            "logLines": msg.log_lines,
        }
        if isinstance(msg, MutationResponse):
            ts = msg.ts
            obj["ts"] = encode_ts(ts) if msg.success and ts is not None else None
        if not msg.success and msg.error_data is not NO_ERROR_DATA:
            obj["errorData"] = _value(msg.error_data)
        return obj
    if isinstance(msg, AuthErrorMessage):
        return {
            "type": "AuthError",
            "error": msg.error,
            "baseVersion": msg.base_version,
            "authUpdateAttempted": msg.auth_update_attempted,
        }
    if isinstance(msg, FatalError):
        return {"type": "FatalError", "error": msg.error}
    return {"type": "Ping"}


def encode_server_message(msg: ServerMessage) -> str:
    return orjson.dumps(server_message_to_json(msg)).decode()


def encode_server_frame(msg: ServerMessage) -> bytes:
    """The UTF-8 text of a server frame: what a socket writes, with no str round trip."""
    return orjson.dumps(server_message_to_json(msg))


def _version(raw: Any, what: str) -> StateVersion:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what}: expected an object")
    return StateVersion(
        _u32(raw, "querySet", what),
        _u32(raw, "identity", what),
        decode_ts(raw.get("ts"), f"{what}.ts"),
    )


def _error_data(raw: dict[str, Any]) -> Any:
    return from_json(raw["errorData"]) if "errorData" in raw else NO_ERROR_DATA


def parse_server_message(data: str | bytes) -> ServerMessage:
    """Parse a server frame (for Syncline's Python client and tests)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"Invalid JSON in server message: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("Server messages are JSON objects")
    kind = obj.get("type")
    if kind == "Transition":
        mods: list[StateModification] = []
        for raw in obj.get("modifications", []):
            mtype = raw.get("type")
            if mtype == "QueryUpdated":
                mods.append(
                    QueryUpdated(
                        raw["queryId"], from_json(raw["value"]), raw["logLines"], raw.get("journal")
                    )
                )
            elif mtype == "QueryFailed":
                mods.append(
                    QueryFailed(
                        raw["queryId"],
                        raw["errorMessage"],
                        raw["logLines"],
                        raw.get("journal"),
                        _error_data(raw),
                    )
                )
            elif mtype == "QueryRemoved":
                mods.append(QueryRemoved(raw["queryId"]))
            else:
                raise ProtocolError(f"Unknown state modification {_show(mtype)}")
        return Transition(
            _version(obj.get("startVersion"), "Transition.startVersion"),
            _version(obj.get("endVersion"), "Transition.endVersion"),
            mods,
            obj.get("clientClockSkew"),
            obj.get("serverTs"),
        )
    if kind in ("MutationResponse", "ActionResponse"):
        success = bool(obj["success"])
        result = from_json(obj["result"]) if success else obj["result"]
        if kind == "MutationResponse":
            ts = obj.get("ts")
            return MutationResponse(
                obj["requestId"],
                success,
                result,
                decode_ts(ts) if ts else None,
                obj.get("logLines", []),
                _error_data(obj),
            )
        return ActionResponse(
            obj["requestId"], success, result, obj.get("logLines", []), _error_data(obj)
        )
    if kind == "AuthError":
        return AuthErrorMessage(
            obj["error"], obj["baseVersion"], obj.get("authUpdateAttempted", True)
        )
    if kind == "FatalError":
        return FatalError(obj["error"])
    if kind == "Ping":
        return Ping()
    raise ProtocolError(f"Unknown server message type {_show(kind)}")
