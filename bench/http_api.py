"""HTTP function API benchmark: a real `syncline serve` driven over keep-alive HTTP/1.1.

    python bench/http_api.py [--rounds 5] [--creates 3000] [--reads 5000]
                             [--create-clients 64] [--read-clients 16]
                             [--profile OUT] [--serve-arg=--flag ...]
    python bench/http_api.py --callgrind [--requests 500]

Creates are ``POST /api/mutation`` ``messages:send``; point reads are
``POST /api/query`` ``messages:get`` by id (the ids the creates returned).
Each connection has one request in flight (a closed loop, like the official
clients). For each round it measures the server process's CPU time (user +
system, from /proc/PID/stat) over the requests and prints, as medians over
the rounds:

  * server CPU µs per request: the figure to compare on a shared machine;
  * requests/s: only meaningful on an otherwise idle machine.

``--profile OUT`` samples the server with py-spy during one extra round of
creates and one of reads (three times the requests), writes ``OUT-creates.txt``
/ ``OUT-reads.txt`` (raw collapsed stacks of the thread holding the GIL,
``py-spy record --gil -f raw``) and prints where the CPU of one request went:
each sample is charged to the innermost frame of a known layer (a Syncline
package, Starlette, uvicorn, the event loop), scaled to the CPU per request
measured in that round. Sampling slows the server down, so that round's CPU
is higher than the others; work outside the GIL (SQLite, system calls) is
charged to the Python frame that called it.

The client is a lean asyncio protocol (no HTTP library) so that as little of
the machine as possible goes to the load generator.

``--callgrind`` counts the instructions of the HTTP layer alone, in process
and repeatable on a loaded machine: the server's uvicorn configuration
(protocol, body guard, ``LeanApi``) is fed ``POST /api/mutation`` requests
on a fake transport, with a stub in place of the function API. It runs
``valgrind --tool=callgrind`` with ``--requests`` and twice as many requests
and prints the difference divided by ``--requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import orjson
from messages_app import cpu_seconds, write_functions

from syncline._devtools import ServerProcess, launch


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight.

    Enough HTTP for this server's answers: a head, then a ``content-length`` body.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def open(cls, port: int) -> HttpConn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, "127.0.0.1", port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:end]).lower() + b"\r\n"
        start = head.index(b"\r\ncontent-length:") + 17
        length = int(head[start : head.index(b"\r\n", start)])
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body))

    async def post(self, path: bytes, body: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        status, answer = await self.waiter
        if status != 200 or not answer.startswith(b'{"status":"success"'):
            raise RuntimeError(f"{path.decode()} answered {status}: {answer[:300]!r}")
        return answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def create_body(i: int) -> bytes:
    return orjson.dumps(
        {"path": "messages:send", "args": {"body": f"message {i}", "channel": f"c{i % 8}"}}
    )


def read_body(doc_id: str) -> bytes:
    return orjson.dumps({"path": "messages:get", "args": {"id": doc_id}})


async def closed_loop(
    conns: list[HttpConn], total: int, one: Callable[[HttpConn, int], Awaitable[None]]
) -> None:
    """``total`` requests spread over ``conns``, each connection one at a time."""
    counter = iter(range(total))

    async def worker(conn: HttpConn) -> None:
        for i in counter:
            await one(conn, i)

    await asyncio.gather(*(worker(c) for c in conns))


async def measure(
    pid: int,
    conns: list[HttpConn],
    total: int,
    one: Callable[[HttpConn, int], Awaitable[None]],
) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await closed_loop(conns, total, one)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return {"per_s": total / wall, "cpu_us": cpu / total * 1e6, "cores": cpu / wall}


class Workload:
    def __init__(self, server: ServerProcess, args: argparse.Namespace) -> None:
        assert server.pid is not None
        self.pid = server.pid
        self.port = server.port
        self.args = args
        self.ids: list[str] = []
        self.n = 0

    async def create(self, conn: HttpConn, i: int) -> None:
        self.n += 1
        answer = await conn.post(b"/api/mutation", create_body(self.n))
        if len(self.ids) < 10_000:
            self.ids.append(orjson.loads(answer)["value"])

    async def read(self, conn: HttpConn, i: int) -> None:
        await conn.post(b"/api/query", read_body(self.ids[i % len(self.ids)]))

    async def conns(self, count: int) -> list[HttpConn]:
        return [await HttpConn.open(self.port) for _ in range(count)]

    async def creates(self, total: int) -> dict[str, float]:
        conns = await self.conns(self.args.create_clients)
        try:
            return await measure(self.pid, conns, total, self.create)
        finally:
            for c in conns:
                c.close()

    async def reads(self, total: int) -> dict[str, float]:
        conns = await self.conns(self.args.read_clients)
        try:
            return await measure(self.pid, conns, total, self.read)
        finally:
            for c in conns:
                c.close()


#: (prefix of py-spy's short file name, layer); the first match from the innermost frame wins
LAYERS = [
    ("syncline/server/", "syncline.server (HTTP API)"),
    ("syncline/", ""),  # syncline.<subpackage>, filled in below
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("anyio/", "anyio"),
    ("asyncio/", "event loop (asyncio, uvloop)"),
    ("uvloop/", "event loop (asyncio, uvloop)"),
    ("threading.py", "threads"),
    ("concurrent/", "threads"),
]
FRAMEWORK = {
    "syncline.server (HTTP API)",
    "starlette",
    "uvicorn",
    "anyio",
    "event loop (asyncio, uvloop)",
}


def layer_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        file = frame[frame.rfind("(") + 1 : frame.rfind(":")]
        for prefix, layer in LAYERS:
            if file.startswith(prefix):
                if layer:
                    return layer
                return "syncline." + file.split("/")[1].removesuffix(".py")
    return "other"


def breakdown(profile: Path, cpu_us: float) -> None:
    """Print the share of each layer in ``profile`` as µs of one request's ``cpu_us``."""
    samples: dict[str, int] = {}
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            layer = layer_of(stack)
            samples[layer] = samples.get(layer, 0) + int(count)
    total = sum(samples.values()) or 1
    framework = sum(n for layer, n in samples.items() if layer in FRAMEWORK)
    for layer, n in sorted(samples.items(), key=lambda item: -item[1]):
        print(f"  {layer:34} {n / total * cpu_us:6.0f} µs  {n / total:6.1%}")
    print(
        f"  framework {framework / total * cpu_us:.0f} µs, "
        f"engine and the rest {(total - framework) / total * cpu_us:.0f} µs ({total} samples)"
    )


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    sampling = ["-r", "1000", "--gil", "--nonblocking", "-f", "raw"]
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), *sampling, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def profiled(
    pid: int, out: Path, run: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    spy = py_spy(pid, out)
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        return await run()
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        spy.wait(30)


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="syncline-http-bench-") as tmp:
        root = Path(tmp)
        write_functions(root / "functions")
        server = launch(root, mode="serve", args=args.serve_arg)
        try:
            work = Workload(server, args)
            await work.creates(min(500, args.creates))  # warm-up, and ids to read
            await work.reads(min(500, args.reads))
            results: dict[str, list[dict[str, float]]] = {"creates": [], "reads": []}
            for _ in range(args.rounds):
                results["creates"].append(await work.creates(args.creates))
                results["reads"].append(await work.reads(args.reads))
            report(args, results)
            if args.profile:
                for name, run in (
                    ("creates", lambda: work.creates(3 * args.creates)),
                    ("reads", lambda: work.reads(3 * args.reads)),
                ):
                    out = Path(f"{args.profile}-{name}.txt")
                    figures = await profiled(work.pid, out, run)
                    print(f"profile of {name}, {figures['cpu_us']:.0f} µs per request ({out}):")
                    breakdown(out, figures["cpu_us"])
        finally:
            server.stop()


def report(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    label = {
        "creates": f"creates (POST /api/mutation, {args.create_clients} connections)",
        "reads": f"point reads (POST /api/query, {args.read_clients} connections)",
    }
    print(f"median of {args.rounds} rounds (each round's figure in brackets)")
    for name, rounds in results.items():
        cpu = [r["cpu_us"] for r in rounds]
        rate = [r["per_s"] for r in rounds]
        cores = [r["cores"] for r in rounds]
        print(f"{label[name]}:")
        print(
            f"  server CPU per request  {statistics.median(cpu):7.0f} µs   "
            f"[{', '.join(f'{x:.0f}' for x in cpu)}]"
        )
        print(
            f"  requests/s              {statistics.median(rate):7.0f}      "
            f"[{', '.join(f'{x:.0f}' for x in rate)}]"
        )
        print(f"  server cores busy       {statistics.median(cores):7.2f}")


class _StubApi:
    """Stands in for ``HttpApi``: the answer of a create, at no cost."""

    async def call(self, kind: object, body: bytes, *args: object) -> tuple[int, bytes]:
        return 200, b'{"status":"success","value":"j572xb7y77580ze9qnzz4zf5j5554fdk","logLines":[]}'


class FakeTransport:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 3210)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def transport_requests(count: int) -> None:
    """``count`` creates through the API port's HTTP layer, one at a time, on a fake transport."""
    import uvicorn
    from uvicorn.server import ServerState

    from syncline.server.lean_api import LeanApi
    from syncline.server.protocols import guarded_http_protocol
    from syncline.server.request_limits import DEFAULT_REQUEST_LIMITS, BodyGuard

    async def nothing_else(scope: object, receive: object, send: object) -> None:
        raise AssertionError("only the function API is requested")

    app = BodyGuard(LeanApi(_StubApi(), nothing_else), body_timeout_s=30)  # type: ignore[arg-type]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        proxy_headers=False,  # as server/run.py: LeanApi applies them past the function API
        http=guarded_http_protocol(DEFAULT_REQUEST_LIMITS),
    )
    config.load()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}
    )
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    request = b"POST /api/mutation HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    request += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body := create_body(1)),
        body,
    )
    for _ in range(count):
        protocol.data_received(request)  # type: ignore[attr-defined]
        while not transport.out:
            await asyncio.sleep(0)
        if not transport.out[-1].startswith(b"HTTP/1.1 200 OK\r\n"):
            raise RuntimeError(f"unexpected answer {transport.out[-1][:200]!r}")
        transport.out.clear()


_COLLECTED = re.compile(rb"Collected : (\d+)")


def _instructions(requests: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += [os.path.abspath(__file__), "--transport-requests", str(requests)]
    done = subprocess.run(command, capture_output=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]!r}")
    return int(found.group(1))


def callgrind(requests: int) -> None:
    once, twice = _instructions(requests), _instructions(2 * requests)
    print(
        "HTTP layer (protocol, body guard, LeanApi; stub function API), "
        f"instructions per create: {(twice - once) / requests:,.0f}"
    )


def _run(coroutine: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=3000, help="creates per round")
    parser.add_argument("--reads", type=int, default=5000, help="point reads per round")
    parser.add_argument("--create-clients", type=int, default=64)
    parser.add_argument("--read-clients", type=int, default=16)
    parser.add_argument("--profile", metavar="OUT", help="py-spy the server into OUT-*.txt")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed on to `syncline serve`"
    )
    parser.add_argument(
        "--callgrind", action="store_true", help="count the HTTP layer's instructions instead"
    )
    parser.add_argument("--requests", type=int, default=500, help="with --callgrind")
    parser.add_argument("--transport-requests", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.transport_requests is not None:
        _run(transport_requests(args.transport_requests))
    elif args.callgrind:
        callgrind(args.requests)
    else:
        _run(bench(args))


if __name__ == "__main__":
    main()
