"""A small Convex sync-protocol server over a toy key-value store, for client tests.

It writes the wire JSON by hand (independently of ``syncline.sync.protocol``) and follows the
protocol reference: one version chain per socket, a Transition for every ModifyQuerySet,
Authenticate and Mutation (after the MutationResponse, at or past the commit ts), AuthError
then close for a rejected token, and de-duplication of re-sent mutations by
``(sessionId, requestId)``.

Functions::

    queries    kv:get {key}     kv:echo {value}   kv:whoami   kv:fail   kv:fail_data
    mutations  kv:set {key, value} -> value       kv:fail     kv:convex_fail {data}
    actions    kv:echo {value}  kv:hang (never answers)       kv:fail_data

Test controls: ``transition_gate`` (clear it to hold the Transitions that follow mutations),
``silence()`` (current sockets ignore everything and send nothing), ``drop()`` (close every
socket), ``corrupt_next_transition()``, ``inject()``, and ``wait_for(predicate)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from syncline.sync.protocol import encode_ts
from syncline.values.json import from_json, to_json

T = TypeVar("T")

ADMIN_KEY = "admin-key"


class FakeConnection:
    def __init__(self, index: int, ws: ServerConnection) -> None:
        self.index = index
        self.ws = ws
        self.path = ws.request.path if ws.request is not None else ""
        self.session_id: str | None = None
        self.query_set = 0
        self.identity = 0
        self.ts = 0
        self.user: str | None = None
        self.queries: dict[int, tuple[str, Any]] = {}
        self.last_sent: dict[int, bytes] = {}
        self.silent = False
        self.sent: list[dict[str, Any]] = []
        # Transitions come from this socket's handler and from other sockets' mutations;
        # the lock keeps each version step and its send together.
        self.lock = asyncio.Lock()

    def version(self) -> dict[str, Any]:
        return {"querySet": self.query_set, "identity": self.identity, "ts": encode_ts(self.ts)}


class FakeSyncServer:
    def __init__(self, *, ping_interval: float | None = None) -> None:
        self.ping_interval = ping_interval
        self.data: dict[str, Any] = {}
        self.ts = 1000
        self.connections: list[FakeConnection] = []
        self.received: list[tuple[int, dict[str, Any]]] = []
        self.mutation_runs: list[tuple[str | None, int]] = []
        self.transition_gate = asyncio.Event()
        self.transition_gate.set()
        self._committed: dict[tuple[str | None, int], tuple[Any, int]] = {}
        self._corrupt_next = False
        self._changed = asyncio.Condition()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeSyncServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.transition_gate.set()  # release handlers parked on it so they can finish
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # ------------------------------------------------------------------ test controls

    def silence(self) -> None:
        for conn in self.connections:
            conn.silent = True

    async def drop(self, code: int = 1011, reason: str = "InternalServerError") -> None:
        for conn in self.connections:
            await conn.ws.close(code, reason)

    def corrupt_next_transition(self) -> None:
        self._corrupt_next = True

    async def inject(self, obj: dict[str, Any], conn: int = -1) -> None:
        await self._send(self.connections[conn], obj)

    def messages(self, kind: str, conn: int | None = None) -> list[dict[str, Any]]:
        return [m for i, m in self.received if m["type"] == kind and (conn is None or i == conn)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ protocol

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConnection(len(self.connections), ws)
        self.connections.append(conn)
        await self._notify()
        pinger = asyncio.create_task(self._ping(conn)) if self.ping_interval else None
        try:
            async for text in ws:
                msg = orjson.loads(text)
                self.received.append((conn.index, msg))
                await self._notify()
                if not conn.silent:
                    await self._dispatch(conn, msg)
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()
                await asyncio.wait({pinger})
            await self._notify()

    async def _ping(self, conn: FakeConnection) -> None:
        assert self.ping_interval is not None
        while True:
            await asyncio.sleep(self.ping_interval)
            await self._send(conn, {"type": "Ping"})

    async def _dispatch(self, conn: FakeConnection, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "Connect":
            conn.session_id = msg["sessionId"]
        elif kind == "ModifyQuerySet":
            if msg["baseVersion"] != conn.query_set:
                await self._fatal(conn, "BaseVersionMismatch")
                return
            removed = []
            for mod in msg["modifications"]:
                qid = mod["queryId"]
                conn.last_sent.pop(qid, None)
                if mod["type"] == "Add":
                    conn.queries[qid] = (mod["udfPath"], from_json(mod["args"][0]))
                else:
                    del conn.queries[qid]
                    removed.append({"type": "QueryRemoved", "queryId": qid})
            await self._transition(conn, removed, query_set=msg["newVersion"])
        elif kind == "Authenticate":
            base = msg["baseVersion"]
            if base != conn.identity:
                await self._fatal(conn, "IdentityVersionMismatch")
                return
            token_type, value = msg["tokenType"], msg.get("value")
            if value == "bad" or (token_type == "Admin" and value != ADMIN_KEY):
                await self._send(
                    conn,
                    {
                        "type": "AuthError",
                        "error": "Could not verify token",
                        "baseVersion": base,
                        "authUpdateAttempted": True,
                    },
                )
                await conn.ws.close()
                return
            if token_type == "User":
                conn.user = value
            elif token_type == "Admin":
                acting = msg.get("impersonating") or msg.get("acting_as") or {}
                conn.user = f"admin as {acting['name']}" if acting else "admin"
            else:
                conn.user = None
            await self._transition(conn, [], identity=conn.identity + 1)
        elif kind == "Mutation":
            await self._mutation(conn, msg)
        elif kind == "Action":
            await self._action(conn, msg)

    def _query_result(self, conn: FakeConnection, path: str, args: Any) -> dict[str, Any]:
        if path == "kv:get":
            return self._ok(self.data.get(args["key"]))
        if path == "kv:echo":
            return self._ok(args.get("value"))
        if path == "kv:whoami":
            return self._ok(conn.user)
        if path == "kv:fail":
            return self._failed("Uncaught Error: boom")
        if path == "kv:fail_data":
            return self._failed("Uncaught ConvexError: qdata", {"why": "x"})
        return self._failed(f"Could not find public function for '{path}'")

    @staticmethod
    def _ok(value: Any) -> dict[str, Any]:
        return {"type": "QueryUpdated", "value": to_json(value), "logLines": [], "journal": None}

    @staticmethod
    def _failed(message: str, data: Any = ...) -> dict[str, Any]:
        out = {"type": "QueryFailed", "errorMessage": message, "logLines": [], "journal": None}
        if data is not ...:
            out["errorData"] = to_json(data)
        return out

    async def _transition(
        self,
        conn: FakeConnection,
        extra: list[dict[str, Any]],
        *,
        query_set: int | None = None,
        identity: int | None = None,
    ) -> None:
        """Move ``conn`` to the latest ts, sending every result that changed."""
        async with conn.lock:
            mods = list(extra)
            for qid, (path, args) in conn.queries.items():
                result = self._query_result(conn, path, args)
                encoded = orjson.dumps(result)
                if conn.last_sent.get(qid) != encoded:
                    conn.last_sent[qid] = encoded
                    mods.append({**result, "queryId": qid})
            start = conn.version()
            if self._corrupt_next:
                self._corrupt_next = False
                start["querySet"] += 7
            conn.query_set = query_set if query_set is not None else conn.query_set
            conn.identity = identity if identity is not None else conn.identity
            conn.ts = self.ts
            await self._send(
                conn,
                {
                    "type": "Transition",
                    "startVersion": start,
                    "endVersion": conn.version(),
                    "modifications": mods,
                },
            )

    async def _mutation(self, conn: FakeConnection, msg: dict[str, Any]) -> None:
        key = (conn.session_id, msg["requestId"])
        path, args = msg["udfPath"], from_json(msg["args"][0])
        response: dict[str, Any] = {
            "type": "MutationResponse",
            "requestId": msg["requestId"],
            "logLines": ["[LOG] 'mutation ran'"],
        }
        if key in self._committed:
            result, ts = self._committed[key]
            response |= {"success": True, "result": to_json(result), "ts": encode_ts(ts)}
        elif path == "kv:set":
            self.mutation_runs.append(key)
            self.ts += 1
            self.data[args["key"]] = args["value"]
            self._committed[key] = (args["value"], self.ts)
            response |= {
                "success": True,
                "result": to_json(args["value"]),
                "ts": encode_ts(self.ts),
            }
        elif path == "kv:convex_fail":
            response |= {
                "success": False,
                "result": "Uncaught ConvexError: bad",
                "ts": None,
                "errorData": to_json(args.get("data")),
            }
        else:
            response |= {"success": False, "result": "Uncaught Error: mutation failed", "ts": None}
        await self._send(conn, response)
        await self.transition_gate.wait()
        for other in self.connections:
            if not other.silent:
                await self._transition(other, [])

    async def _action(self, conn: FakeConnection, msg: dict[str, Any]) -> None:
        path, args = msg["udfPath"], from_json(msg["args"][0])
        response: dict[str, Any] = {
            "type": "ActionResponse",
            "requestId": msg["requestId"],
            "logLines": [],
        }
        if path == "kv:hang":
            return
        if path == "kv:echo":
            response |= {"success": True, "result": to_json(args.get("value"))}
        elif path == "kv:fail_data":
            response |= {
                "success": False,
                "result": "Uncaught ConvexError",
                "errorData": to_json([1.0]),
            }
        else:
            response |= {"success": False, "result": "Uncaught Error: action failed"}
        await self._send(conn, response)

    async def _fatal(self, conn: FakeConnection, error: str) -> None:
        await self._send(conn, {"type": "FatalError", "error": error})
        await conn.ws.close()

    async def _send(self, conn: FakeConnection, obj: dict[str, Any]) -> None:
        if conn.silent:
            return
        conn.sent.append(obj)
        try:
            await conn.ws.send(orjson.dumps(obj).decode())
        except ConnectionClosed:
            pass
        await self._notify()


class ThreadedFakeServer:
    """A FakeSyncServer on its own event loop in a thread, for tests of the blocking Client."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.server: FakeSyncServer | None = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with FakeSyncServer() as server:
            self.server = server
            self._ready.set()
            await self._stop.wait()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def call(self, fn: Callable[[FakeSyncServer], Awaitable[T]], timeout: float = 5.0) -> T:
        assert self._loop is not None and self.server is not None
        server = self.server

        async def run() -> T:
            return await fn(server)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def __enter__(self) -> ThreadedFakeServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
