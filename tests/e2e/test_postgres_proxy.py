"""PostgreSQL nodes behind the nginx and Caddy configurations of ``docs/deployment.md``.

A real proxy (Debian's ``nginx`` or ``caddy`` package, started by the test)
runs the documented configuration, its upstreams pointed at two local nodes
and TLS left out, in front of them. Through each:

* plain HTTP calls reach both nodes (no stickiness);
* an official Python client's WebSocket passes the upgrade, and its
  subscription receives a mutation committed on the other node;
* a rolling restart (each node in turn stopped with SIGTERM and started
  again) drops no subscription: the client reconnects through the proxy and
  receives every later commit.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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
CADDY_MARK = "<!-- caddy-nodes -->"

#: Starts a proxy in front of the nodes, returns its URL.
ProxyFor = Callable[[list[ServerProcess]], str]


def _documented_block(mark: str, fence: str) -> str:
    text = DEPLOYMENT_DOC.read_text()
    return text.split(mark, 1)[1].split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def documented_config(nodes: list[ServerProcess], port: int) -> str:
    """The guide's nginx block for N nodes, on ``port`` without TLS, in front of ``nodes``."""
    block = _documented_block(MARK, "nginx")
    upstreams = re.findall(r"^ *server 10\.0\.0\.\d+:3210( [^\n]*);\n", block, re.MULTILINE)
    assert len(upstreams) == 3, block
    servers = "".join(f"    server 127.0.0.1:{n.port}{upstreams[0]};\n" for n in nodes)
    block = re.sub(r"(^ *server 10\.0\.0\.\d+:3210[^\n]*\n)+", servers, block, flags=re.MULTILINE)
    block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    block = re.sub(r"^ *(server_name|# ssl_certificate) [^\n]*\n", "", block, flags=re.MULTILINE)
    assert "10.0.0." not in block and "443" not in block and "ssl" not in block, block
    return block


def documented_caddyfile(nodes: list[ServerProcess], port: int, folder: Path) -> str:
    """The guide's Caddyfile for N nodes, on ``port`` over plain HTTP, in front of ``nodes``.

    Global options keep this Caddy to itself: no admin endpoint (its fixed port
    would collide with another Caddy), no automatic HTTPS, state in ``folder``.
    """
    block = _documented_block(CADDY_MARK, "text")
    upstreams = re.findall(r"10\.0\.0\.\d+:3210", block)
    assert len(upstreams) == 3 and block.startswith("api.example.com {"), block
    block = block.replace(" ".join(upstreams), " ".join(f"127.0.0.1:{n.port}" for n in nodes))
    block = block.replace("api.example.com {", f"http://127.0.0.1:{port} {{", 1)
    assert "10.0.0." not in block and "example.com" not in block, block
    options = f"{{\n    admin off\n    auto_https off\n    storage file_system {folder}/data\n}}\n"
    return options + block


def _wait_serving(proc: subprocess.Popen[bytes], url: str) -> bool:
    """True once ``url`` answers ``/version`` through the proxy, False if it exits first."""
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/version", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[ProxyFor]:
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
            if _wait_serving(proc, url):
                return url
            proc.kill()
            _, err = proc.communicate()
            if b"Address already in use" not in err:
                log = (folder / "error.log").read_text(errors="replace")
                raise AssertionError(f"nginx did not serve:\n{err.decode()}\n{log[-3000:]}")
        raise AssertionError("nginx found no free port")

    yield start
    _stop_all(procs)


@pytest.fixture
def caddy_for(tmp_path: Path) -> Iterator[ProxyFor]:
    """``caddy_for(nodes) -> url``: ``caddy run`` (in the foreground) with the guide's Caddyfile."""
    binary = shutil.which("caddy")
    if binary is None:
        require_or_skip("caddy is not installed (apt-get install caddy)")
    folder = tmp_path / "caddy"
    folder.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    # Caddy keeps its state under XDG folders (HOME by default): this test's own.
    env = {**os.environ, "XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)}

    def start(nodes: list[ServerProcess]) -> str:
        for _ in range(3):
            (port,) = ports_below_ephemeral_range()
            config = folder / "Caddyfile"
            config.write_text(documented_caddyfile(nodes, port, folder))
            proc = subprocess.Popen(
                [binary, "run", "--config", str(config), "--adapter", "caddyfile"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            if _wait_serving(proc, url):
                return url
            proc.kill()
            _, err = proc.communicate()
            if b"address already in use" not in err:
                raise AssertionError(f"caddy did not serve:\n{err.decode()[-3000:]}")
        raise AssertionError("caddy found no free port")

    yield start
    _stop_all(procs)


@pytest.fixture(params=["nginx", "caddy"])
def proxy_for(request: pytest.FixtureRequest) -> ProxyFor:
    """Each documented proxy in turn."""
    proxy: ProxyFor = request.getfixturevalue(f"{request.param}_for")
    return proxy


def test_nodes_behind_the_documented_proxy_config_serve_subscriptions_through_a_rolling_restart(
    start_node: StartNode, proxy_for: ProxyFor
) -> None:
    convex = require_module("convex", "pip install convex")
    nodes = [start_node(restartable=True) for _ in range(2)]
    url = proxy_for(nodes)

    # Plain HTTP calls are spread over both nodes (Caddy breaks least_conn ties at
    # random: 20 calls all reaching one node would be a 1 in 500,000 chance).
    with httpx.Client(timeout=30) as http:
        answered = {
            int(
                http.post(
                    f"{url}/api/mutation",
                    json={"path": "workers:where", "args": {}, "format": "json"},
                ).json()["value"]
            )
            for _ in range(20)
        }
    assert answered == {node.pid for node in nodes}

    client = convex.ConvexClient(url)
    # The client's WebSocket went through the proxy to one node: commit on the other.
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
        # node), then the other; after each, a commit through the proxy reaches the client.
        for step, node in enumerate((here, other), start=2):
            await asyncio.to_thread(node.restart)
            await asyncio.to_thread(_increment_through, url)
            await until(float(step))

    asyncio.run(asyncio.wait_for(watch(), 150))
    assert seen[0] == 0.0 and seen[-1] == 3.0
    assert seen == sorted(seen), seen  # never back to an older state


def _increment_through(url: str) -> None:
    """One increment through the proxy, retried while it still finds a node starting."""
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
        assert time.monotonic() < deadline, "no increment went through the proxy"
        time.sleep(0.2)
