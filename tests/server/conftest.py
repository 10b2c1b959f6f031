"""In-process server fixtures: a project on disk, an Application, a TestClient, a real uvicorn.

* ``make_server(files)`` writes ``files`` into ``tmp_path/.../functions``, opens an
  :class:`Application` on a temp SQLite file and enters a Starlette ``TestClient``
  (which runs the lifespan, so live queries are started). ``server.ws()`` opens a
  sync WebSocket wrapped in :class:`WsClient`: JSON frames in and out, receive
  with a timeout, and every Transition checked against the version chain.
* ``live_server`` runs the production ``syncline.server.run.serve`` (the real
  uvicorn configuration) in a background thread on a free 127.0.0.1 port, for
  tests that need truly concurrent clients (``websockets`` library).

This directory is a package (``__init__.py``) so that this conftest does not
shadow ``tests/conftest.py`` as the top-level module ``conftest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.websockets import WebSocketDisconnect

from syncline._devtools import free_port
from syncline.application import Application
from syncline.clock import Clock
from syncline.database.database import Database
from syncline.persistence.sqlite import SqlitePersistence
from syncline.server.app import create_app
from syncline.sync.protocol import decode_ts

with warnings.catch_warnings():
    # Starlette would like `httpx2`; the project depends on httpx, which still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient, WebSocketTestSession

ADMIN_KEY = "test-admin-key"
TS0 = "AAAAAAAAAAA="
INITIAL = {"querySet": 0, "identity": 0, "ts": TS0}

#: A small project used by most server tests.
BASIC_FILES: dict[str, str] = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "messages": define_table({"channel": v.string(), "body": v.string()})
                .index("by_channel", ["channel"]),
            "other": define_table({"n": v.float64()}),
        })
    """,
    "messages.py": """
        from syncline import ConvexError, Int64, action, internal_query, mutation, query, v


        def _in(ctx, channel):
            return ctx.db.query("messages").with_index(
                "by_channel", lambda q: q.eq("channel", channel)
            ).collect()


        @query(args={"channel": v.string()})
        def list(ctx, channel):
            print(f"listing {channel}")
            return [m["body"] for m in _in(ctx, channel)]


        @query(args={"channel": v.string()})
        def count(ctx, channel):
            return len(_in(ctx, channel))


        @query
        def total(ctx):
            return len(ctx.db.query("messages").collect())


        @query
        def shapes(ctx):
            return {"float": 2.0, "int": 3, "int64": Int64(7), "big": Int64(2**40),
                    "neg0": -0.0, "nan": float("nan"), "bytes": b"\\x01\\x02", "none": None}


        @query
        def boom(ctx):
            raise ValueError("query boom")


        @query
        def convex_boom(ctx):
            raise ConvexError({"why": "query says no"})


        @internal_query
        def secret(ctx):
            return "internal only"


        @mutation(args={"channel": v.string(), "body": v.string()})
        def send(ctx, channel, body):
            print(f"sending {body}")
            return ctx.db.insert("messages", {"channel": channel, "body": body})


        @mutation(args={"id": v.id("messages"), "body": v.string()})
        def edit(ctx, id, body):
            ctx.db.patch(id, {"body": body})


        @mutation
        def touch_other(ctx):
            return ctx.db.insert("other", {"n": 1})


        @mutation(args={"channel": v.string()})
        def fail(ctx, channel):
            ctx.db.insert("messages", {"channel": channel, "body": "never"})
            raise ValueError("mutation boom")


        @mutation(args={"channel": v.string()})
        def convex_fail(ctx, channel):
            ctx.db.insert("messages", {"channel": channel, "body": "never"})
            raise ConvexError({"why": "bad", "n": Int64(3)})


        @action(args={"x": v.float64()})
        async def double(ctx, x):
            print("doubling")
            return x * 2


        @action
        async def convex_nope(ctx):
            raise ConvexError("action says no")


        @action
        async def plain_nope(ctx):
            raise RuntimeError("action boom")


        @action(args={"channel": v.string(), "body": v.string()})
        async def send_via_action(ctx, channel, body):
            return await ctx.run_mutation("messages:send", {"channel": channel, "body": body})
    """,
    "who.py": """
        from syncline import query


        @query
        def me(ctx):
            identity = ctx.auth.get_user_identity()
            return None if identity is None else identity.subject
    """,
}


def write_project(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``{relative path: source}`` (dedented) below ``root/functions``; return that."""
    functions = root / "functions"
    functions.mkdir(parents=True, exist_ok=True)
    for rel, source in files.items():
        path = functions / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return functions


def open_application(
    root: Path, files: Mapping[str, str], *, clock: Clock | None = None
) -> Application:
    functions = write_project(root, files)
    database = Database(SqlitePersistence(str(root / "db.sqlite3"), durability="off"), clock=clock)
    app = Application(database, functions, clock=clock, admin_key=ADMIN_KEY)
    try:
        app.load()
    except BaseException:
        app.close()
        raise
    return app


# ---------------------------------------------------------------------- auth

ISSUER = "https://issuer.test"
AUDIENCE = "test-app"


class Keys:
    """An RSA signing key published in the provider's inline JWKS, and one that is not."""

    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [{**public_jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}

    def token(
        self,
        subject: str = "user-a",
        *,
        key: Any = None,
        kid: str = "k1",
        now: float | None = None,
        lifetime_s: float = 3600,
        **claims: Any,
    ) -> str:
        now = time.time() if now is None else now
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": int(now),
            "exp": int(now + lifetime_s),
            **claims,
        }
        return jwt.encode(payload, key or self.private, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


def auth_files(keys: Keys) -> dict[str, str]:
    provider = {
        "type": "custom_jwt",
        "issuer": ISSUER,
        "jwks": keys.jwks,
        "algorithm": "RS256",
        "application_id": AUDIENCE,
    }
    return {
        **BASIC_FILES,
        "auth_config.py": f"providers = [{json.dumps(provider)}]\n",
        "whoami.py": """
            from syncline import mutation, query


            @query
            def name(ctx):
                identity = ctx.auth.get_user_identity()
                return None if identity is None else identity.name


            @mutation
            def token_identifier(ctx):
                identity = ctx.auth.get_user_identity()
                return None if identity is None else identity.token_identifier


            @mutation
            def slow_token_identifier(ctx):
                import time

                started = time.perf_counter()
                while time.perf_counter() - started < 0.3:
                    pass
                identity = ctx.auth.get_user_identity()
                return None if identity is None else identity.token_identifier
        """,
    }


# ---------------------------------------------------------------------- TestClient websockets


class Closed(Exception):
    """The server closed the socket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with code {code} {reason!r}")
        self.code = code
        self.reason = reason


SERVER_MESSAGE_TYPES = frozenset(
    {"Transition", "MutationResponse", "ActionResponse", "AuthError", "FatalError", "Ping"}
)


def check_server_message(msg: dict[str, Any]) -> None:
    """Shape rules every server message must follow (protocol §3, §11)."""
    kind = msg.get("type")
    # No TransitionChunk (Rust/Py reject it) and nothing unknown (JS crashes on it).
    assert kind in SERVER_MESSAGE_TYPES, f"unknown server message type in {msg}"
    if kind in ("MutationResponse", "ActionResponse"):
        assert isinstance(msg["requestId"], int)
        assert isinstance(msg["success"], bool)
        assert "result" in msg
        assert isinstance(msg["logLines"], list)
        if not msg["success"]:
            assert isinstance(msg["result"], str)
        else:
            assert "errorData" not in msg
    if kind == "MutationResponse":
        if msg["success"]:
            decode_ts(msg["ts"])
        else:
            assert msg.get("ts") is None
    if kind == "ActionResponse":
        assert "ts" not in msg
    if kind == "AuthError":
        assert isinstance(msg["error"], str)
        assert isinstance(msg["baseVersion"], int)
        assert isinstance(msg["authUpdateAttempted"], bool)


class ChainTracker:
    """A client's view of the sync state: version chain and query results."""

    def __init__(self) -> None:
        self.version: dict[str, Any] = dict(INITIAL)
        self.results: dict[int, Any] = {}
        self.transitions: list[dict[str, Any]] = []

    def apply(self, msg: dict[str, Any]) -> None:
        assert msg["startVersion"] == self.version, (
            f"Transition starts at {msg['startVersion']}, previous end was {self.version}"
        )
        start_ts = decode_ts(msg["startVersion"]["ts"])
        end_ts = decode_ts(msg["endVersion"]["ts"])
        assert end_ts >= start_ts, "Transition goes back in time"
        assert set(msg["endVersion"]) == {"querySet", "identity", "ts"}
        for mod in msg["modifications"]:
            if mod["type"] == "QueryUpdated":
                assert isinstance(mod["logLines"], list)
                assert "journal" in mod
                self.results[mod["queryId"]] = ("ok", mod["value"])
            elif mod["type"] == "QueryFailed":
                assert isinstance(mod["logLines"], list)
                assert "journal" in mod
                self.results[mod["queryId"]] = ("error", mod["errorMessage"], mod.get("errorData"))
            else:
                assert mod["type"] == "QueryRemoved", mod
                self.results.pop(mod["queryId"], None)
        self.version = msg["endVersion"]
        self.transitions.append(msg)

    @property
    def ts(self) -> int:
        return decode_ts(self.version["ts"])

    def value(self, query_id: int) -> Any:
        result = self.results[query_id]
        assert result[0] == "ok", result
        return result[1]


class WsClient:
    """A raw sync connection over the TestClient: JSON frames, receive timeouts, chain checks."""

    def __init__(self, session: WebSocketTestSession) -> None:
        self.session = session
        self.state = ChainTracker()
        self.query_set = 0
        self.identity = 0
        self.next_request = 0
        self.closed: Closed | None = None

    # -- raw frames

    def send(self, msg: Mapping[str, Any] | str) -> None:
        self.session.send_text(msg if isinstance(msg, str) else json.dumps(msg))

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next server message (Transitions are checked and applied); raises Closed."""
        if self.closed is not None:
            raise self.closed

        async def get() -> Any:
            with anyio.fail_after(timeout):
                return await self.session._send_rx.receive()

        try:
            message = self.session.portal.call(get)
        except TimeoutError:
            raise AssertionError(f"no message from the server within {timeout} s") from None
        if message["type"] == "websocket.close":
            self.closed = Closed(message.get("code"), message.get("reason") or "")
            raise self.closed
        assert message["type"] == "websocket.send", message
        assert "text" in message and message.get("bytes") is None, "frames must be text"
        msg = json.loads(message["text"])
        check_server_message(msg)
        if msg["type"] == "Transition":
            self.state.apply(msg)
        return msg

    def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        msg = self.receive(timeout)
        assert msg["type"] == kind, f"expected {kind}, got {msg}"
        return msg

    def expect_close(self, timeout: float = 5.0) -> tuple[dict[str, Any] | None, Closed]:
        """Read up to the close: (the last message before it, the close)."""
        last = None
        while True:
            try:
                last = self.receive(timeout)
            except Closed as closed:
                return last, closed

    # -- protocol helpers

    def connect(self, session_id: str | None = None, **extra: Any) -> str:
        session_id = session_id or str(uuid.uuid4())
        self.send(
            {
                "type": "Connect",
                "sessionId": session_id,
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
                **extra,
            }
        )
        return session_id

    def modify(self, *modifications: dict[str, Any]) -> None:
        base = self.query_set
        self.query_set += 1
        self.send(
            {
                "type": "ModifyQuerySet",
                "baseVersion": base,
                "newVersion": self.query_set,
                "modifications": list(modifications),
            }
        )

    def add(self, query_id: int, path: str, args: Mapping[str, Any] | None = None) -> None:
        self.modify(add(query_id, path, args))

    def remove(self, query_id: int) -> None:
        self.modify({"type": "Remove", "queryId": query_id})

    def _request(
        self, kind: str, path: str, args: Mapping[str, Any] | None, request_id: int | None
    ) -> int:
        if request_id is None:
            request_id = self.next_request
            self.next_request += 1
        self.send({"type": kind, "requestId": request_id, "udfPath": path, "args": [args or {}]})
        return request_id

    def mutation(
        self, path: str, args: Mapping[str, Any] | None = None, *, request_id: int | None = None
    ) -> int:
        return self._request("Mutation", path, args, request_id)

    def action(
        self, path: str, args: Mapping[str, Any] | None = None, *, request_id: int | None = None
    ) -> int:
        return self._request("Action", path, args, request_id)

    def authenticate(self, token_type: str, value: str | None = None, **extra: Any) -> None:
        msg: dict[str, Any] = {
            "type": "Authenticate",
            "baseVersion": self.identity,
            "tokenType": token_type,
            **extra,
        }
        if value is not None:
            msg["value"] = value
        self.identity += 1
        self.send(msg)

    def transition(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.expect("Transition", timeout)

    def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Receive until ``predicate(msg)``; return every message received (the match last)."""
        seen = []
        while True:
            msg = self.receive(timeout)
            seen.append(msg)
            if predicate(msg):
                return seen

    def call(self, path: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run a mutation and return its response, consuming the Transition that follows."""
        request_id = self.mutation(path, args)
        response = self.until(
            lambda m: m["type"] == "MutationResponse" and m["requestId"] == request_id
        )[-1]
        self.settle_after(response)
        return response

    def settle_after(self, response: dict[str, Any]) -> dict[str, Any]:
        """Receive up to the Transition that follows a MutationResponse (and reaches its ts)."""
        target = decode_ts(response["ts"]) if response.get("ts") else 0
        while True:
            msg = self.transition()
            if decode_ts(msg["endVersion"]["ts"]) >= target:
                return msg


def add(query_id: int, path: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "Add", "queryId": query_id, "udfPath": path, "args": [args or {}]}


@dataclass
class Server:
    app: Application
    client: TestClient
    _sockets: list[contextlib.AbstractContextManager[Any]] = field(default_factory=list)

    def ws(self, path: str = "/api/sync", **kwargs: Any) -> WsClient:
        """A new sync connection (closed at teardown)."""
        if path.startswith("//"):
            path = "ws://testserver" + path  # urljoin would read `//api` as a host
        cm = self.client.websocket_connect(path, **kwargs)
        session = cm.__enter__()
        self._sockets.append(cm)
        return WsClient(session)

    def close_sockets(self) -> None:
        while self._sockets:
            cm = self._sockets.pop()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                cm.__exit__(None, None, None)


MakeServer = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """``make_server(files=BASIC_FILES, clock=None)``: a served project; all closed at teardown."""
    made: list[Server] = []
    stack = contextlib.ExitStack()

    def make(files: Mapping[str, str] | None = None, *, clock: Clock | None = None) -> Server:
        root = tmp_path / f"project{len(made)}"
        app = open_application(root, BASIC_FILES if files is None else files, clock=clock)
        stack.callback(app.close)
        client = TestClient(create_app(app))
        stack.enter_context(client)
        server = Server(app, client)
        stack.callback(server.close_sockets)
        made.append(server)
        return server

    with stack:
        yield make


@pytest.fixture
def server(make_server: MakeServer) -> Server:
    return make_server()


# ---------------------------------------------------------------------- real uvicorn


@dataclass
class LiveServer:
    app: Application
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/sync"


class _RecordingServer(uvicorn.Server):
    """``uvicorn.Server`` that lets the fixture find (and stop) the instance ``serve`` made."""

    instances: list[uvicorn.Server] = []

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        _RecordingServer.instances.append(self)


@contextlib.contextmanager
def serving(app: Application) -> Iterator[LiveServer]:
    """Run ``syncline.server.run.serve`` (production config) for ``app`` in a thread.

    ``uvicorn.Server`` is swapped for a recording subclass while the server starts,
    so that the fixture can stop it gracefully (signal handlers are only installed
    on the main thread, so uvicorn leaves them alone here).
    """
    from syncline.server import run

    _RecordingServer.instances = []
    port = free_port()
    ready = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run.serve(app, host="127.0.0.1", port=port, on_ready=ready.set))
        except BaseException as exc:  # reported by the fixture
            failure.append(exc)
            ready.set()

    gc_threshold = gc.get_threshold()  # serve() tunes the (process-wide) collector
    thread = threading.Thread(target=main, name="syncline-test-uvicorn", daemon=True)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(run.uvicorn, "Server", _RecordingServer)
            thread.start()
            assert ready.wait(15), "the server did not start"
        assert not failure, failure
        assert _RecordingServer.instances, "serve() did not build a uvicorn.Server"
        yield LiveServer(app, port)
    finally:
        for instance in _RecordingServer.instances:
            instance.should_exit = True
        if thread.is_alive():
            thread.join(20)
            assert not thread.is_alive(), "the server did not shut down"
        gc.unfreeze()
        gc.set_threshold(*gc_threshold)
    assert not failure, failure


@pytest.fixture
def make_live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``make_live_server(files=BASIC_FILES)``: a real uvicorn serving a project."""
    stack = contextlib.ExitStack()
    count = 0

    def make(files: Mapping[str, str] | None = None) -> LiveServer:
        nonlocal count
        count += 1
        root = tmp_path / f"live{count}"
        app = open_application(root, BASIC_FILES if files is None else files)
        stack.callback(app.close)
        return stack.enter_context(serving(app))

    with stack:
        yield make


@pytest.fixture
def live_server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    return make_live_server()


# ---------------------------------------------------------------------- websockets clients


class AsyncWs:
    """A sync-protocol client on a real socket (``websockets``), for the uvicorn fixture."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.state = ChainTracker()
        self.query_set = 0
        self.next_request = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> AsyncWs:
        from websockets.asyncio.client import connect

        options = {"proxy": None, "compression": None, "max_size": None, **kwargs}
        return cls(await connect(url, **options))

    async def close(self) -> None:
        await self.connection.close()

    async def send(self, msg: Mapping[str, Any] | str) -> None:
        await self.connection.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        assert isinstance(raw, str), "frames must be text"
        msg = json.loads(raw)
        check_server_message(msg)
        if msg["type"] == "Transition":
            self.state.apply(msg)
        return msg

    async def connect(self, session_id: str | None = None) -> None:
        await self.send(
            {
                "type": "Connect",
                "sessionId": session_id or str(uuid.uuid4()),
                "connectionCount": 0,
                "lastCloseReason": "InitialConnect",
                "clientTs": 0,
            }
        )

    async def modify(self, *modifications: dict[str, Any]) -> None:
        base = self.query_set
        self.query_set += 1
        await self.send(
            {
                "type": "ModifyQuerySet",
                "baseVersion": base,
                "newVersion": self.query_set,
                "modifications": list(modifications),
            }
        )

    async def mutation(self, path: str, args: Mapping[str, Any] | None = None) -> int:
        request_id = self.next_request
        self.next_request += 1
        await self.send(
            {"type": "Mutation", "requestId": request_id, "udfPath": path, "args": [args or {}]}
        )
        return request_id

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        while True:
            msg = await self.receive(timeout)
            if predicate(msg):
                return msg
