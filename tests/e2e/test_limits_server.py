"""Request limits of both ports, against a real ``syncline serve``.

* A chunked 1 GiB body to any function API endpoint is refused with 413
  ``RequestTooLarge`` once it passes the limit: the server's memory grows by
  less than 50 MB (it used to buffer whole bodies before checking).
* A request head that trickles in, a body that stops arriving and an oversized
  head are answered 408 / 408 / 431 and the connection is closed, on the API
  port and on the site port; sockets that send nothing are closed too.
* A port already in use stops ``serve`` / ``dev`` with one ``error:`` line
  naming the port and its option, exit status 1, before the data folder exists.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets.asyncio.client

from syncline._devtools import ServerProcess, launch

from .conftest import MakeProject

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 16 * 1024
GiB = 1024**3
MiB = 1024**2


HTTP_MODULE = """
    from syncline import HttpResponse, HttpRouter

    http = HttpRouter()


    @http.route(path="/echo", method="POST")
    async def echo(ctx, request):
        return HttpResponse(await request.body())
"""


LIMIT_FLAGS = [
    "--header-timeout",
    str(HEADER_TIMEOUT_S),
    "--body-timeout",
    str(BODY_TIMEOUT_S),
    "--max-header-size",
    str(MAX_HEADER_BYTES),
]


@pytest.fixture(scope="module")
def limited(project: MakeProject) -> Iterator[ServerProcess]:
    """A ``syncline serve`` with short request deadlines and an echo HTTP action."""
    proc = launch(project({"http.py": HTTP_MODULE}), mode="serve", args=LIMIT_FLAGS)
    try:
        yield proc
        assert proc.alive(), f"the server died during the tests:\n{proc.log()}"
    finally:
        proc.stop()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (read until the server closes)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), f"not an HTTP response: {data[:200]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds`` (whatever it sent first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False


@pytest.mark.parametrize(
    "path", ["/api/query", "/api/mutation", "/api/action", "/api/function", "/api/run/tasks/list"]
)
def test_chunked_body_past_the_limit_is_refused_while_streaming(
    limited: ServerProcess, path: str
) -> None:
    assert limited.proc is not None
    before = rss_bytes(limited.proc.pid)
    sock = connect(limited.port)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"x" * MiB
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    peak = before
    sock.setblocking(False)
    try:
        while sent < GiB:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break  # the server answered (or closed) before the body ended
            if not writable:
                pytest.fail(f"the server neither read nor answered after {sent} bytes")
            try:
                sent += sock.send(frame) and len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            if sent % (64 * MiB) == 0:
                peak = max(peak, rss_bytes(limited.proc.pid))
        sock.setblocking(True)
        status, headers, body = read_response(sock)
    finally:
        sock.close()
    peak = max(peak, rss_bytes(limited.proc.pid))
    assert sent < 64 * MiB, f"the server read {sent} bytes before refusing"
    assert status == 413
    assert headers.get("connection") == "close"
    assert json.loads(body)["code"] == "RequestTooLarge"
    assert peak - before < 50 * MiB, f"server RSS grew by {(peak - before) / MiB:.0f} MB"


@pytest.mark.parametrize("port_name", ["port", "site_port"])
def test_trickling_request_heads_are_cut_off(limited: ServerProcess, port_name: str) -> None:
    port = getattr(limited, port_name)
    socks = [connect(port) for _ in range(20)]
    started = time.monotonic()
    for sock in socks:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")
    # One byte a few times a second per socket: each keeps the head incomplete.
    cut_off: set[int] = set()
    while time.monotonic() - started < HEADER_TIMEOUT_S + 4 and len(cut_off) < len(socks):
        for i, sock in enumerate(socks):
            if i in cut_off:
                continue
            ready, _, _ = select.select([sock], [], [], 0)
            if ready:
                cut_off.add(i)  # answered (and closed): stop writing to it
                continue
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                cut_off.add(i)
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    assert len(cut_off) == len(socks), f"{len(socks) - len(cut_off)} trickling sockets still open"
    assert elapsed < HEADER_TIMEOUT_S + 4
    status, _, body = read_response(socks[0])
    assert status == 408
    assert json.loads(body)["code"] == "RequestTimeout"
    for sock in socks:
        sock.close()


@pytest.mark.parametrize("port_name", ["port", "site_port"])
def test_silent_connections_are_closed(limited: ServerProcess, port_name: str) -> None:
    sock = connect(getattr(limited, port_name))
    try:
        assert closed_within(sock, HEADER_TIMEOUT_S + 3)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("port_name", "path"),
    [("port", "/api/mutation"), ("port", "/http/echo"), ("site_port", "/echo")],
)
def test_a_stalled_body_is_cut_off(limited: ServerProcess, port_name: str, path: str) -> None:
    sock = connect(getattr(limited, port_name))
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"path": '.encode()
        )
        started = time.monotonic()
        status, headers, body = read_response(sock, timeout=BODY_TIMEOUT_S + 5)
        assert time.monotonic() - started < BODY_TIMEOUT_S + 3
    finally:
        sock.close()
    assert status == 408
    assert headers.get("connection") == "close"
    assert json.loads(body)["code"] == "RequestTimeout"


def send_until_answered(sock: socket.socket, data: bytes, repeat: int) -> int:
    """Send ``data`` up to ``repeat`` times, stopping once the server answers; bytes sent.

    Loopback socket buffers hold megabytes: the count says how much was queued,
    not how much the server read."""
    sent = 0
    sock.setblocking(False)
    try:
        for _ in range(repeat):
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            if not writable:
                pytest.fail(f"the server neither read nor answered after {sent} bytes")
            try:
                sock.sendall(data)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(data)
    finally:
        sock.setblocking(True)
    return sent


def test_an_oversized_head_is_refused(limited: ServerProcess) -> None:
    sock = connect(limited.port)
    try:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        send_until_answered(sock, b"X-Filler: " + b"y" * 1000 + b"\r\n", 1000)
        status, _, body = read_response(sock)
    finally:
        sock.close()
    assert status == 431
    assert json.loads(body)["code"] == "RequestHeadersTooLarge"


def test_ordinary_requests_and_keep_alive_still_work(limited: ServerProcess) -> None:
    sock = connect(limited.port)
    try:
        body = json.dumps({"path": "tasks:list", "args": {}}).encode()
        for _ in range(3):
            sock.sendall(
                b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            sock.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" not in head.lower()
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += sock.recv(65536)
            assert json.loads(rest)["status"] == "success"
    finally:
        sock.close()


@pytest.mark.parametrize("mode", ["serve", "dev"])
@pytest.mark.parametrize("flag", ["--port", "--site-port"])
def test_a_port_in_use_fails_fast_with_one_line(
    project: MakeProject, tmp_path: Path, mode: str, flag: str
) -> None:
    folder = project()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    other = free.getsockname()[1]
    free.close()
    ports = {"--port": str(other), "--site-port": str(other)}
    ports[flag] = str(busy)
    command = [sys.executable, "-m", "syncline", mode, "--dir", str(folder)]
    command += ["--port", ports["--port"], "--site-port", ports["--site-port"]]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert str(busy) in lines[0] and flag in lines[0]
    assert "already in use" in lines[0]
    assert result.stdout == ""
    # Nothing started: the data folder (database, crons, scheduler) was never opened.
    assert not (folder / ".syncline").exists()


def test_websockets_outlive_the_header_deadline(limited: ServerProcess) -> None:
    async def hold() -> None:
        url = limited.url.replace("http://", "ws://") + "/api/sync"
        async with websockets.asyncio.client.connect(url) as ws:
            await asyncio.sleep(HEADER_TIMEOUT_S + 1.5)
            await asyncio.wait_for(await ws.ping(), 5)

    asyncio.run(hold())
