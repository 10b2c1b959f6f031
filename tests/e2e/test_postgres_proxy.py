"""PostgreSQL nodes behind the nginx configuration of ``docs/deployment.md``.

A real nginx (``apt-get install nginx``) runs the documented configuration,
its ``server`` lines pointed at two local nodes and TLS left out, in front of
them. Through it:

* plain HTTP calls reach both nodes (no stickiness);
* an official Python client's WebSocket passes the upgrade, and its
  subscription receives a mutation committed on the other node;
* a rolling restart (each node in turn stopped with SIGTERM and started
  again) drops no subscription: the client reconnects through nginx and
  receives every later commit.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import require_module, require_or_skip
from postgres_cluster import ports_below_ephemeral_range
from syncline._devtools import ServerProcess

from .conftest import StartNode
from .test_workers import call

pytestmark = pytest.mark.slow

DEPLOYMENT_DOC = Path(__file__).parents[2] / "docs" / "deployment.md"
MARK = "<!-- nginx-nodes -->"


def documented_config(nodes: list[ServerProcess], port: int) -> str:
    """The guide's nginx block for N nodes, on ``port`` without TLS, in front of ``nodes``."""
    text = DEPLOYMENT_DOC.read_text()
    block = text.split(MARK, 1)[1].split("```nginx\n", 1)[1].split("```", 1)[0]
    upstreams = re.findall(r"^ *server 10\.0\.0\.\d+:3210( [^\n]*);\n", block, re.MULTILINE)
    assert len(upstreams) == 3, block
    servers = "".join(f"    server 127.0.0.1:{n.port}{upstreams[0]};\n" for n in nodes)
    block = re.sub(r"(^ *server 10\.0\.0\.\d+:3210[^\n]*\n)+", servers, block, flags=re.MULTILINE)
    block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    block = re.sub(r"^ *(server_name|# ssl_certificate) [^\n]*\n", "", block, flags=re.MULTILINE)
    assert "10.0.0." not in block and "443" not in block and "ssl" not in block, block
    return block


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[Any]:
    """``nginx_for(nodes) -> url``: nginx (not a daemon, one process) with the guide's config."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        require_or_skip("nginx is not installed (apt-get install nginx)")
    folder = tmp_path / "nginx"
    folder.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(nodes: list[ServerProcess]) -> str:
        for _ in range(3):
            (port,) = ports_below_ephemeral_range()
            temp = "\n".join(
                f"    {kind}_temp_path {folder}/{kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            (folder / "nginx.conf").write_text(
                f"pid {folder}/nginx.pid;\n"
                f"error_log {folder}/error.log info;\n"
                "events { worker_connections 512; }\n"
                f"http {{\n    access_log off;\n{temp}\n{documented_config(nodes, port)}}}\n"
            )
            proc = subprocess.Popen(
                [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                 "-e", str(folder / "error.log"), "-g", "daemon off; master_process off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/version", timeout=2).status_code == 200:
                        return url
                except httpx.TransportError:
                    time.sleep(0.05)
            proc.kill()
            _, err = proc.communicate()
            if b"Address already in use" not in err:
                log = (folder / "error.log").read_text(errors="replace")
                raise AssertionError(f"nginx did not serve:\n{err.decode()}\n{log[-3000:]}")
        raise AssertionError("nginx found no free port")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_nodes_behind_the_documented_nginx_config_serve_subscriptions_through_a_rolling_restart(
    start_node: StartNode, nginx_for: Any
) -> None:
    convex = require_module("convex", "pip install convex")
    nodes = [start_node(restartable=True) for _ in range(2)]
    url = nginx_for(nodes)

    # Plain HTTP calls are spread over both nodes.
    with httpx.Client(timeout=30) as http:
        answered = {
            int(
                http.post(
                    f"{url}/api/mutation",
                    json={"path": "workers:where", "args": {}, "format": "json"},
                ).json()["value"]
            )
            for _ in range(10)
        }
    assert answered == {node.pid for node in nodes}

    client = convex.ConvexClient(url)
    # The client's WebSocket went through nginx to one node: commit on the other.
    first = int(client.mutation("workers:where"))
    here = next(node for node in nodes if node.pid == first)
    other = next(node for node in nodes if node is not here)
    seen: list[float] = []

    async def watch() -> None:
        subscription = client.subscribe("workers:counter", {"name": "r"})

        async def until(value: float) -> None:
            while not seen or seen[-1] < value:
                seen.append(await asyncio.wait_for(subscription.__anext__(), 60))

        await until(0.0)
        await asyncio.to_thread(call, other, "mutation", "workers:increment", {"name": "r"})
        await until(1.0)
        # Rolling restart: the client's node first (its WebSocket moves to the other
        # node), then the other; after each, a commit through nginx reaches the client.
        for step, node in enumerate((here, other), start=2):
            await asyncio.to_thread(node.restart)
            await asyncio.to_thread(_increment_through, url)
            await until(float(step))

    asyncio.run(asyncio.wait_for(watch(), 150))
    assert seen[0] == 0.0 and seen[-1] == 3.0
    assert seen == sorted(seen), seen  # never back to an older state


def _increment_through(url: str) -> None:
    """One increment through nginx, retried while the proxy still finds a node starting."""
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx.post(
                f"{url}/api/mutation",
                json={"path": "workers:increment", "args": {"name": "r"}, "format": "json"},
                timeout=30,
            )
            if response.status_code == 200 and response.json()["status"] == "success":
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no increment went through nginx"
        time.sleep(0.2)
