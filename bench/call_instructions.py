"""Instructions per HTTP function call through the whole server stack, in process.

    python bench/call_instructions.py [--mode create|read|latest] [--calls 200]
    python bench/call_instructions.py --run --mode read --calls 3000

The server's API-port stack (uvicorn's protocol as ``serve`` configures it,
``LeanApi``, the function API, the executor, the database with its read and
mutation threads, SQLite in WAL mode with ``synchronous=NORMAL``, the log
history writer) is fed ``POST /api/mutation`` (``messages:send``) or ``POST
/api/query`` (``messages:get`` by id, or ``messages:latest``: a channel's
newest 20) one call at a time, on a fake transport: no sockets, no load
generator. Under ``valgrind --tool=callgrind`` it counts the instructions of
``--calls`` and of twice as many calls and prints the difference divided by
``--calls``: what one more call costs, start-up excluded. The count does not
move when other programs load the machine, unlike CPU time; system calls
(socket, futex) and cache misses are not in it. For ``create`` it still
moves by up to 7% between runs of the same code: whether a mutation commits
on the thread that ran it or is handed to the committer depends on thread
timing. Compare medians of several runs. ``--run`` runs the calls
without valgrind and prints the process CPU time per call instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from http_api import FakeTransport
from messages_app import write_functions

_COLLECTED = re.compile(rb"Collected : (\d+)")
_WARM_CALLS = 50


class _Transport(FakeTransport):
    """The fake transport, waking the caller waiting for an answer."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def calls(mode: str, count: int) -> None:
    """``count`` calls of ``mode`` (after a few to warm up); prints the CPU per call."""
    import uvicorn
    from uvicorn.server import ServerState

    from syncline.application import Application
    from syncline.call_log.store import LogStore, store_path
    from syncline.call_log.writer import CallLog
    from syncline.server.app import create_app
    from syncline.server.protocols import guarded_http_protocol
    from syncline.server.request_limits import DEFAULT_REQUEST_LIMITS, BodyGuard

    root = Path(tempfile.mkdtemp(prefix="call-instructions-"))
    write_functions(root / "functions")
    app = Application.open(
        root,
        db=f"sqlite:///{root / 'data' / 'data.sqlite3'}",
        durability="normal",
        dev=False,
        files=root / "files",
    )
    assert app.paths is not None
    call_log = CallLog(
        now_ms=app.clock.now_ms,
        store=LogStore(store_path(app.paths.database_dir), max_bytes=64 << 20, max_age_ms=3600e3),
    )
    app.executor.observers.append(call_log.observe)
    call_log.start()
    config = uvicorn.Config(
        BodyGuard(create_app(app, manage_lifecycle=False), body_timeout_s=30),
        lifespan="off",
        log_level="warning",
        proxy_headers=False,  # as server/run.py: LeanApi applies them
        http=guarded_http_protocol(DEFAULT_REQUEST_LIMITS),
    )
    config.load()
    await app.start()
    protocol: Any = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}
    )
    transport = _Transport()
    protocol.connection_made(transport)
    loop = asyncio.get_running_loop()

    async def post(path: bytes, body: dict[str, Any]) -> Any:
        payload = orjson.dumps({**body, "format": "json"})
        request = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:3210\r\n" % path
        request += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(payload),
            payload,
        )
        transport.waiter = loop.create_future()
        protocol.data_received(request)
        await transport.waiter
        answer = b"".join(transport.out)
        transport.out.clear()
        head, _, content = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"unexpected answer {answer[:300]!r}")
        return orjson.loads(content)["value"]

    def send(n: int, channel: str) -> dict[str, Any]:
        return {"path": "messages:send", "args": {"body": f"m{n}", "channel": channel}}

    doc_id = None
    for n in range(20):
        doc_id = await post(b"/api/mutation", send(n, "read"))
    started = 0.0
    for n in range(_WARM_CALLS + count):
        if n == _WARM_CALLS:
            started = time.process_time()
        if mode == "create":
            await post(b"/api/mutation", send(n, "create"))
        elif mode == "read":
            await post(b"/api/query", {"path": "messages:get", "args": {"id": doc_id}})
        else:
            await post(b"/api/query", {"path": "messages:latest", "args": {"channel": "read"}})
    cpu = time.process_time() - started
    print(f"{mode}: {cpu / count * 1e6:.0f} µs process CPU per call ({count} calls)")
    await app.stop()
    call_log.close()
    app.close()


def _instructions(mode: str, count: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += [os.path.abspath(__file__), "--run", "--mode", mode, "--calls", str(count)]
    done = subprocess.run(command, capture_output=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]!r}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["create", "read", "latest"], default="read")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--run", action="store_true", help="run the calls (no valgrind)")
    args = parser.parse_args()
    if args.run:
        try:
            import uvloop
        except ImportError:
            asyncio.run(calls(args.mode, args.calls))
        else:
            uvloop.run(calls(args.mode, args.calls))
        return
    once = _instructions(args.mode, args.calls)
    twice = _instructions(args.mode, 2 * args.calls)
    print(f"{args.mode}: {(twice - once) / args.calls:,.0f} instructions per call (whole stack)")


if __name__ == "__main__":
    main()
