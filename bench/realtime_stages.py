"""Realtime latency, stage by stage: from a create to the frame each subscriber receives.

    python bench/realtime_stages.py [--subscribers 1,200,1000] [--samples 200]
                                    [--durability normal] [--ws-creates 200]

A real ``syncline serve`` runs in a child process with probes wrapped around
the realtime path (installed by this script in the child only: the server's
code carries no instrumentation). Each probe appends ``(stage, monotonic ns)``
to a list that the child writes to a file when it exits. The clients run in
this process: raw WebSocket subscribers of ``messages:latest {channel}`` (the
query the side-by-side harness uses: newest 20 messages of a channel) and one
HTTP client that creates a message with a unique body, one at a time, waiting
until every subscriber has it. Both processes read the same monotonic clock.

Stages (per create; for fan-out the first and the last subscriber):

    create sent      the client writes ``POST /api/mutation``
    commit           the writer thread publishes the commit (commit listener called)
    loop             the commit reaches the event loop (``process_commits`` starts)
    invalidated      read sets matched, re-runs scheduled
    rerun start      the re-run starts on a read thread
    rerun done       the re-run's snapshot read ends
    encoded          its result is encoded on the loop (``QueryResult.from_outcome``)
    built            a session's Transition is built
    written          its frame is handed to the socket
    received         a subscriber has the frame (``data_received`` in this process)

``--ws-creates N`` also times N creates sent as sync-protocol ``Mutation``
messages: send -> ``MutationResponse`` -> the ``Transition`` after it.

Printed: p50/p99 of each stage's time since the previous stage, and of the
cumulative time since the create was sent; and the server's CPU time per
create (from ``/proc``: robust when the machine is busy, unlike wall time). The machine is shared: quote medians
of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import bisect
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from messages_app import cpu_seconds, write_functions

from syncline._devtools import add_query_message, connect_frame, free_ports

HOST = "127.0.0.1"
CHANNEL = "fan"

# ---------------------------------------------------------------------- the server child


def _probe(
    events: list[tuple[str, int]],
    owner: Any,
    name: str,
    enter: str | None,
    leave: str | None,
    when: Callable[[Any], bool] | None = None,
) -> None:
    """Wrap ``owner.name`` (sync or async) to record ``enter``/``leave`` stamps."""
    original = getattr(owner, name, None)
    if original is None:
        return
    now = time.perf_counter_ns
    add = events.append
    raw = owner.__dict__.get(name)
    is_classmethod = isinstance(raw, classmethod)
    func = raw.__func__ if is_classmethod else original

    if asyncio.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            if enter:
                add((enter, now()))
            result = await func(*args, **kwargs)
            if leave and (when is None or when(args)):
                add((leave, now()))
            return result

        setattr(owner, name, awrapper)
        return

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if enter:
            add((enter, now()))
        result = func(*args, **kwargs)
        if leave and (result is not None if when is None else when(args)):
            add((leave, now()))
        return result

    setattr(owner, name, classmethod(wrapper) if is_classmethod else wrapper)


def _child(out: str, durability: str, argv: list[str]) -> None:
    """Run ``syncline`` with the probes installed; write the stamps at exit."""
    events: list[tuple[str, int]] = []

    def dump() -> None:
        Path(out).write_bytes(orjson.dumps(events))

    atexit.register(dump)

    from syncline.application import Application
    from syncline.database.database import Database
    from syncline.live_queries import LiveQueryManager, QueryResult
    from syncline.server import ws
    from syncline.sync.session import SyncSession

    original_open = Application.open.__func__  # type: ignore[attr-defined]

    def open_app(cls: Any, *a: Any, **kwargs: Any) -> Any:
        kwargs["durability"] = durability  # what PocketBase runs with: synchronous=NORMAL
        return original_open(cls, *a, **kwargs)

    Application.open = classmethod(open_app)  # type: ignore[method-assign,assignment]

    always = lambda args: True  # noqa: E731
    _probe(events, LiveQueryManager, "_on_commits_threadsafe", "commit", None)
    _probe(events, LiveQueryManager, "process_commits", "loop", "invalidated", always)
    _probe(events, Database, "run_read", "rerun start", "rerun done", always)
    _probe(events, QueryResult, "from_outcome", None, "encoded", always)
    _probe(events, SyncSession, "build_transition", None, "built")
    # The frame reaches the socket in whichever writer this version has.
    if hasattr(ws.SyncWebSocketProtocol, "write_message"):
        _probe(events, ws.SyncWebSocketProtocol, "write_message", None, "written", always)
        _probe(events, ws.SyncWebSocketProtocol, "write_message_now", None, "written", always)
    else:
        _probe(
            events,
            ws.SyncWebSocketProtocol,
            "send",
            None,
            "written",
            lambda args: args[1].get("type") == "websocket.send",
        )

    from syncline.cli import main as cli_main

    sys.argv = ["syncline", *argv]
    cli_main()


# ---------------------------------------------------------------------- lean clients


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WSClient(asyncio.Protocol):
    """A raw RFC 6455 client: calls ``on_message(payload, t_ns)`` per text frame."""

    def __init__(self, on_message: Callable[[bytes, int], None]) -> None:
        self.on_message = on_message
        self.buf = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False

    @classmethod
    async def connect(cls, port: int, on_message: Callable[[bytes, int], None]) -> WSClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(on_message), HOST, port)
        await client.open
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /api/sync HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(_client_frame(orjson.dumps(message)))

    def data_received(self, data: bytes) -> None:
        t = time.perf_counter_ns()
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[: end + 4]
            self.upgraded = True
            self.open.set_result(None)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, head = b1 & 0x7F, 2
            if size == 126:
                if n - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if n - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < head + size:
                break
            payload = bytes(buf[pos + head : pos + head + size])
            pos += head + size
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self.on_message(payload, t)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(_client_frame(payload, 0xA))
        del buf[:pos]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Subscriber:
    """Subscribes to ``messages:latest {channel}``; reports when a marker arrives."""

    def __init__(self, on_marker: Callable[[bytes, int], None]) -> None:
        self.on_marker = on_marker
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ws: WSClient | None = None
        self.watch: bytes | None = None

    async def open(self, port: int) -> None:
        self.ws = await WSClient.connect(port, self._on_message)
        self.ws.send(orjson.loads(connect_frame()))
        self.ws.send(
            add_query_message("messages:latest", {"channel": CHANNEL}, query_id=0, version=1)
        )
        await asyncio.wait_for(self.ready, 60)

    def _on_message(self, payload: bytes, t: int) -> None:
        if not payload.startswith(b'{"type":"Transition"'):
            return
        if not self.ready.done():
            if b'"QueryUpdated"' in payload:
                self.ready.set_result(None)
            return
        watch = self.watch
        if watch is not None and watch in payload:
            self.watch = None
            self.on_marker(watch, t)


class HTTPCreator(asyncio.Protocol):
    """``POST /api/mutation`` on one keep-alive connection, one at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            if b'"status":"success"' not in body:
                self.waiter.set_exception(RuntimeError(f"create failed: {body[:300]!r}"))
            else:
                self.waiter.set_result(None)

    def create(self, body: str) -> asyncio.Future[None]:
        assert self.transport is not None
        payload = orjson.dumps(
            {"path": "messages:send", "args": {"body": body, "channel": CHANNEL}, "format": "json"}
        )
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST /api/mutation HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        return self.waiter


# ---------------------------------------------------------------------- measuring

STAGES = ["commit", "loop", "invalidated", "rerun start", "rerun done", "encoded"]
FANNED = ["built", "written", "received"]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited early")
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /version HTTP/1.1\r\nHost: bench\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def _measure(
    port: int, n_subs: int, samples: int, pid: int
) -> tuple[list[tuple[int, dict[bytes, int]]], float]:
    """Create ``samples`` messages; for each, (send time, marker -> receive times)."""
    received: list[int] = []

    def on_marker(marker: bytes, t: int) -> None:
        received.append(t)
        if len(received) == n_subs and not all_in.done():
            all_in.set_result(None)

    subs = [Subscriber(on_marker) for _ in range(n_subs)]
    for start in range(0, n_subs, 50):
        await asyncio.gather(*(s.open(port) for s in subs[start : start + 50]))
    loop = asyncio.get_running_loop()
    _, creator = await loop.create_connection(HTTPCreator, HOST, port)
    await asyncio.sleep(0.5)
    runs: list[tuple[int, dict[bytes, int]]] = []
    cpu_before = cpu_seconds(pid)
    for i in range(samples):
        marker = f"m{n_subs}-{i}-{uuid.uuid4().hex[:8]}"
        for s in subs:
            s.watch = marker.encode()
        received = []
        all_in = loop.create_future()
        t0 = time.perf_counter_ns()
        await creator.create(marker)
        await asyncio.wait_for(all_in, 30)
        runs.append((t0, {b"first": min(received), b"last": max(received)}))
        await asyncio.sleep(0.02)  # keep creates apart: each one's stamps stand alone
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / samples
    assert creator.transport is not None
    creator.transport.close()
    for s in subs:
        assert s.ws is not None
        s.ws.close()
    await asyncio.sleep(0.3)
    return runs, cpu_ms


async def _measure_ws_creates(port: int, samples: int) -> tuple[list[float], list[float]]:
    """Creates over the sync protocol: times to MutationResponse and to the Transition after it."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {}

    def on_message(payload: bytes, t: int) -> None:
        if payload.startswith(b'{"type":"MutationResponse"'):
            state["response"] = t
        elif payload.startswith(b'{"type":"Transition"') and "response" in state:
            fut = state.pop("done", None)
            if fut is not None and not fut.done():
                fut.set_result(t)

    ws = await WSClient.connect(port, on_message)
    ws.send(orjson.loads(connect_frame()))
    to_response, to_transition = [], []
    for i in range(samples):
        state.clear()
        state["done"] = done = loop.create_future()
        t0 = time.perf_counter_ns()
        ws.send(
            {
                "type": "Mutation",
                "requestId": i,
                "udfPath": "messages:send",
                "args": [{"body": f"ws-{i}", "channel": "ws"}],
            }
        )
        t_end = await asyncio.wait_for(done, 30)
        to_response.append((state["response"] - t0) / 1e6)
        to_transition.append((t_end - t0) / 1e6)
    ws.close()
    return to_response, to_transition


def _breakdown(
    runs: list[tuple[int, dict[bytes, int]]], events: list[tuple[str, int]]
) -> dict[str, list[float]]:
    """Per create, each stage's ms since the create was sent (stage -> values)."""
    events = sorted(events, key=lambda e: e[1])
    times = [t for _, t in events]
    out: dict[str, list[float]] = {}
    for t0, got in runs:
        t_end = got[b"last"]
        lo, hi = bisect.bisect_left(times, t0), bisect.bisect_right(times, t_end)
        window = events[lo:hi]
        marks: dict[str, int] = {}
        after = t0
        for stage in STAGES:
            hit = next((t for s, t in window if s == stage and t >= after), None)
            if hit is None:
                break
            marks[stage] = after = hit
        else:
            for stage in FANNED[:2]:
                hits = [t for s, t in window if s == stage and t >= after]
                if not hits:
                    break
                marks[f"{stage} first"] = hits[0]
                marks[f"{stage} last"] = hits[-1]
            marks["received first"] = got[b"first"]
            marks["received last"] = got[b"last"]
        for stage, t in marks.items():
            out.setdefault(stage, []).append((t - t0) / 1e6)
    return out


def _print(n_subs: int, stages: dict[str, list[float]]) -> None:
    print(f"\n{n_subs} subscriber(s): ms, p50 / p99 (since previous stage | since create sent)")
    previous: list[float] | None = None
    for stage, values in stages.items():
        if previous is not None and len(previous) == len(values):
            deltas = [b - a for a, b in zip(previous, values, strict=True)]
            step = f"{_pct(deltas, 50):7.3f} / {_pct(deltas, 99):7.3f}"
        else:
            step = " " * 17
        print(
            f"  {stage:16s} {step}  | {_pct(values, 50):7.3f} / {_pct(values, 99):7.3f}"
            f"   (n={len(values)})"
        )
        if not stage.endswith("first"):
            previous = values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="1,200,1000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--durability", default="normal", choices=["full", "normal", "off"])
    parser.add_argument("--ws-creates", type=int, default=200)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out, durability, *rest = args.child
        _child(out, durability, rest)
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    counts = [int(x) for x in args.subscribers.split(",") if x]

    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run

    for n_subs in counts:
        with tempfile.TemporaryDirectory(prefix="rt-stages-") as tmp:
            root = Path(tmp)
            write_functions(root / "app" / "functions")
            (root / "data").mkdir()
            port, site = free_ports(2)
            stamps = root / "stamps.json"
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(stamps),
                args.durability,
                "serve",
                "--dir",
                str(root / "app"),
                "--db",
                f"sqlite:///{root / 'data' / 'data.sqlite3'}",
                "--files",
                str(root / "data" / "files"),
                "--host",
                HOST,
                "--port",
                str(port),
                "--site-port",
                str(site),
            ]
            log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
            ws_times: tuple[list[float], list[float]] | None = None
            try:
                run(_wait_ready(port, proc))
                runs, cpu_ms = run(_measure(port, n_subs, args.samples, proc.pid))
                if n_subs == 1 and args.ws_creates:
                    ws_times = run(_measure_ws_creates(port, args.ws_creates))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
            if not stamps.exists():
                print((root / "serve.log").read_text()[-2000:])
                raise SystemExit("the server wrote no stamps")
            events = [(s, t) for s, t in orjson.loads(stamps.read_bytes())]
            _print(n_subs, _breakdown(runs, events))
            print(f"  server CPU per create (all threads, incl. the HTTP create): {cpu_ms:.2f} ms")
            if ws_times is not None:
                response, transition = ws_times
                print(
                    f"\nWebSocket creates (Mutation), ms p50 / p99: MutationResponse "
                    f"{_pct(response, 50):.3f} / {_pct(response, 99):.3f}; the Transition after "
                    f"it {_pct(transition, 50):.3f} / {_pct(transition, 99):.3f}"
                )


if __name__ == "__main__":
    main()
