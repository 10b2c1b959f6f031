"""Protocol fuzzing: random and malformed client frames against the decoder and the session.

The decoder either returns a message or raises ProtocolError. A session fed
any sequence of frames ends with a close (or the client leaving) and never
with an unhandled exception; a bystander session on the same application
keeps being served throughout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.application import Application
from syncline.clock import SystemClock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.sync.limits import ConnectionLimits
from syncline.sync.protocol import ProtocolError, ServerMessage, parse_client_message
from syncline.sync.session import CloseConnection, SyncSession

EXAMPLES = 2000

FUNCTIONS = """
from syncline import action, mutation, query, v

@query
def count(ctx):
    return float(len(ctx.db.query("items").take(100)))

@query(args={"n": v.number()})
def echo(ctx, n):
    return n

@mutation
def add(ctx):
    ctx.db.insert("items", {})

@action(args={"x": v.any()})
async def identity(ctx, x):
    return x
"""

PATHS = ["app:count", "app:echo", "app:add", "app:identity", "app", "nope:nothing", "", "a" * 300]

# ---------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["$integer", "$bytes", "$float", "AAAAAAAAAAA=", "User", "Admin", "None"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(["$integer", "$bytes", "type"])),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=8,
)
versions = st.one_of(st.integers(min_value=0, max_value=3), st.integers(), json_values)
query_ids = st.one_of(st.integers(min_value=0, max_value=4), json_values)
args = st.one_of(
    st.just([{}]),
    st.builds(lambda n: [{"n": n}], st.one_of(st.floats(allow_nan=False), json_values)),
    st.lists(json_values, max_size=2),
    json_values,
)
paths = st.one_of(st.sampled_from(PATHS), json_values)


def _maybe_drop(fields: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    """Sometimes leave a field out."""
    if draw(st.integers(0, 4)) == 0:
        fields.pop(draw(st.sampled_from(sorted(fields))))
    return fields


@st.composite
def client_messages(draw: st.DrawFn) -> Any:
    kind = draw(
        st.sampled_from(
            ["Connect", "ModifyQuerySet", "Mutation", "Action", "Authenticate", "Event", "other"]
        )
    )
    if kind == "Connect":
        fields: dict[str, Any] = {
            "sessionId": draw(st.one_of(st.uuids().map(str), json_values)),
            "connectionCount": draw(versions),
            "lastCloseReason": draw(json_values),
            "clientTs": draw(json_values),
            "maxObservedTimestamp": draw(json_values),
        }
    elif kind == "ModifyQuerySet":
        modification = st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.just("Add"),
                    "queryId": query_ids,
                    "udfPath": paths,
                    "args": args,
                    "journal": st.one_of(st.none(), json_values),
                }
            ),
            st.fixed_dictionaries({"type": st.just("Remove"), "queryId": query_ids}),
            json_values,
        )
        fields = {
            "baseVersion": draw(versions),
            "newVersion": draw(versions),
            "modifications": draw(st.one_of(st.lists(modification, max_size=4), json_values)),
        }
    elif kind in ("Mutation", "Action"):
        fields = {
            "requestId": draw(versions),
            "udfPath": draw(paths),
            "args": draw(args),
            "componentPath": draw(st.one_of(st.none(), json_values)),
        }
    elif kind == "Authenticate":
        fields = {
            "baseVersion": draw(versions),
            "tokenType": draw(st.one_of(st.sampled_from(["User", "Admin", "None"]), json_values)),
            "value": draw(st.one_of(st.text(max_size=40), json_values)),
            "impersonating": draw(st.one_of(st.none(), json_values)),
        }
    elif kind == "Event":
        fields = {"eventType": draw(json_values), "event": draw(json_values)}
    else:
        return draw(json_values)  # not a message object at all, or an unknown type
    return {"type": kind, **_maybe_drop(fields, draw)}


frames = st.one_of(
    client_messages().map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=50),
)


# ---------------------------------------------------------------------- the decoder


@settings(max_examples=EXAMPLES, deadline=None)
@given(frames)
def test_the_decoder_returns_a_message_or_raises_a_protocol_error(frame: str | bytes) -> None:
    try:
        parse_client_message(frame)
    except ProtocolError as exc:
        assert str(exc)
        assert len(str(exc)) < 2000


# ---------------------------------------------------------------------- the session


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """One application and event loop for every example, with a bystander subscribed."""

    def __init__(self, tmp_path: Path) -> None:
        functions = tmp_path / "functions"
        functions.mkdir()
        (functions / "app.py").write_text(FUNCTIONS)
        database = Database(
            SqlitePersistence(str(tmp_path / "db.sqlite3"), durability="off"), clock=SystemClock()
        )
        self.app = Application(database, functions, admin_key="fuzz-admin-key")
        self.app.load()
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.app.start())
        self.bystander_updates: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.bystander_frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.bystander = SyncSession(self.app, self.bystander_updates.put)
        self.bystander_task = self.loop.create_task(self.bystander.run(self._bystander_in()))
        for frame in (
            {"type": "Connect", "sessionId": "bystander", "connectionCount": 0},
            {
                "type": "ModifyQuerySet",
                "baseVersion": 0,
                "newVersion": 1,
                "modifications": [
                    {"type": "Add", "queryId": 0, "udfPath": "app:count", "args": [{}]}
                ],
            },
        ):
            self.bystander_frames.put_nowait(json.dumps(frame))
        self.live_baseline = 0
        self.errors = ErrorLog()

    async def _bystander_in(self) -> AsyncIterator[str]:
        while True:
            frame = await self.bystander_frames.get()
            if frame is None:
                return
            yield frame

    async def fuzz_session(self, frames: list[str | bytes]) -> CloseConnection | None:
        async def incoming() -> AsyncIterator[str | bytes]:
            for frame in frames:
                yield frame

        async def discard(message: ServerMessage) -> None:
            pass

        limits = ConnectionLimits(max_queries=3, max_inflight_actions=2, max_queued_mutations=2)
        session = SyncSession(self.app, discard, limits=limits)
        return await asyncio.wait_for(session.run(incoming()), 10)

    def bystander_sees_a_write(self) -> None:
        async def check() -> None:
            while not self.bystander_updates.empty():
                self.bystander_updates.get_nowait()
            await self.app.executor.mutation("app:add", {})
            while True:
                message = await asyncio.wait_for(self.bystander_updates.get(), 10)
                if getattr(message, "modifications", None):
                    return

        self.loop.run_until_complete(check())

    def close(self) -> None:
        self.bystander_frames.put_nowait(None)
        self.loop.run_until_complete(self.bystander_task)
        self.loop.run_until_complete(self.app.stop())
        self.loop.close()
        self.app.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("fuzz"))
    harness.bystander_sees_a_write()
    harness.live_baseline = len(harness.app.live)
    logging.getLogger("syncline").addHandler(harness.errors)
    try:
        yield harness
        assert not harness.bystander_task.done(), "the bystander session ended"
        harness.bystander_sees_a_write()
    finally:
        logging.getLogger("syncline").removeHandler(harness.errors)
        harness.close()
    assert not harness.errors.records, [r.getMessage() for r in harness.errors.records]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(frames, min_size=1, max_size=6))
def test_any_frames_end_the_session_cleanly_and_leave_others_alone(
    harness: Harness, frames: list[str | bytes]
) -> None:
    harness.errors.records.clear()
    close = harness.loop.run_until_complete(harness.fuzz_session(frames))
    # Nothing escaped: an unhandled exception is logged as an error (and closes with 1011).
    assert not harness.errors.records, [r.getMessage() for r in harness.errors.records]
    if close is not None:
        # Only protocol outcomes: a FatalError/AuthError close or an overload close.
        assert close.reason != "InternalServerError", close
        assert close.code in (1000, 1011, 1013), close
    assert len(harness.app.live) == harness.live_baseline  # subscriptions released
    assert not harness.bystander_task.done()
