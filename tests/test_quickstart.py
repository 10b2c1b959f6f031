"""The README's quickstart, run as written in a fresh copy of the checkout.

The commands are read from README.md: the first ```sh block runs the example
app, the second runs the tests. Both run with bash in a temporary copy of the
checkout (the files git tracks, plus new ones it does not ignore), with a
clean environment (no active virtualenv), so `python3 -m venv .venv`, the
activation and `pip install -e .` really happen.

1. The "run the example" command. Its ``syncline dev|serve`` gets free ports
   (``--port``/``--site-port``) instead of 3210/3211; once ``/version``
   answers, a client subscribes to the example's live query, calls its
   mutation, and must see the new result pushed.
2. The "run the tests" command, with ``pytest`` only collecting (running the
   whole suite from inside the suite would be a loop): the dev extra installs
   and every test module imports in a fresh environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncline._devtools import free_ports
from syncline.client import AsyncClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: From the first command to a serving server (venv, pip install, start).
SERVE_TIMEOUT_S = 240.0
LIVE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


# ----------------------------------------------------------------------------- README


def readme_commands() -> list[str]:
    """The first two ```sh blocks of README.md: (run the example, run the tests)."""
    blocks = re.findall(r"^```(?:sh|bash|shell)[ \t]*\n(.*?)^```", README.read_text(), re.M | re.S)
    assert len(blocks) >= 2, "README.md should start with two ```sh blocks (example, tests)"
    return [block.strip() for block in blocks[:2]]


SERVER_COMMAND = re.compile(r"\bsyncline\s+(dev|serve)\b")


def with_ports(script: str, port: int, site_port: int) -> str:
    """``script`` with its one ``syncline dev|serve`` on the given ports."""
    found = SERVER_COMMAND.findall(script)
    assert len(found) == 1, f"expected one `syncline dev` or `syncline serve` in:\n{script}"
    return SERVER_COMMAND.sub(
        lambda m: f"{m.group(0)} --port {port} --site-port {site_port}", script
    )


def example_dir(script: str) -> str:
    line = next(part for part in re.split(r"&&|;|\n", script) if SERVER_COMMAND.search(part))
    found = re.search(r"--dir[= ]\s*(\S+)", line)
    return found.group(1) if found else "."


# ----------------------------------------------------------------------------- live checks


@dataclass(frozen=True)
class LiveCheck:
    """How to see an example's live query move: subscribe, mutate, look for a marker."""

    query: str
    query_args: dict[str, Any]
    mutation: str
    mutation_args: Callable[[str], dict[str, Any]]
    shows: Callable[[Any, str], bool]
    #: extra checks of the example's HTTP actions: (path, text the response contains)
    pages: tuple[tuple[str, str], ...] = ()


LIVE_CHECKS: dict[str, LiveCheck] = {
    "tasks": LiveCheck(
        query="tasks:list",
        query_args={},
        mutation="tasks:add",
        mutation_args=lambda marker: {"title": marker},
        shows=lambda result, marker: any(t["title"] == marker for t in result),
    ),
    "chat": LiveCheck(
        query="messages:list",
        query_args={},
        mutation="messages:send",
        mutation_args=lambda marker: {"author": "quickstart", "body": marker},
        shows=lambda result, marker: any(m["body"] == marker for m in result),
        pages=(
            ("/", '<script src="convex.js">'),
            ("/app.js", "ConvexClient"),
            ("/convex.js", "ConvexClient"),  # the npm bundle: the README must install it
        ),
    ),
}


async def see_live_update(url: str, check: LiveCheck) -> list[Any]:
    """Subscribe, mutate, and return the results seen until the mutation shows."""
    marker = f"quickstart-{uuid.uuid4().hex[:10]}"
    seen: list[Any] = []
    async with AsyncClient(url) as client:
        subscription = client.subscribe(check.query, check.query_args)
        seen.append(await asyncio.wait_for(anext(subscription), LIVE_TIMEOUT_S))
        assert not check.shows(seen[0], marker)
        await asyncio.wait_for(
            client.mutation(check.mutation, check.mutation_args(marker)), LIVE_TIMEOUT_S
        )
        deadline = time.monotonic() + LIVE_TIMEOUT_S
        while not check.shows(seen[-1], marker):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the mutation never showed in {check.query}: {seen!r}"
            seen.append(await asyncio.wait_for(anext(subscription), remaining))
        await subscription.aclose()
    return seen


# ----------------------------------------------------------------------------- processes


def clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no active virtualenv, no pytest variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "PYTHON")) and k not in ("VIRTUAL_ENV", "COV_CORE_SOURCE")
    }
    venv_bins = {str(Path(sys.prefix) / "bin")}
    if "VIRTUAL_ENV" in os.environ:
        venv_bins.add(str(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p not in venv_bins
    )
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(script: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["bash", "-c", f"set -e\n{script}"],
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one below
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the script's process group (the server too), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            # The shell is gone; stop what it left behind in its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# ----------------------------------------------------------------------------- checkout


def checkout_files() -> list[str]:
    """What a fresh clone (plus files not yet committed) holds, relative to the repo."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = b""
    names = [n for n in out.decode().split("\0") if n]
    if not names:  # not a git checkout: everything but local state
        skip = {".git", ".venv", ".ci-venv", "node_modules", ".syncline", "__pycache__"}
        names = [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(REPO).parts)
        ]
    return names


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("quickstart") / "syncline"
    for name in checkout_files():
        source = REPO / name
        if source.is_file():  # (deleted but not yet committed files are listed too)
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    yield root
    # The virtualenv and node_modules are large; keep the rest (logs) for a look after a failure.
    for heavy in (root / ".venv", *root.glob("examples/*/node_modules")):
        shutil.rmtree(heavy, ignore_errors=True)


# ----------------------------------------------------------------------------- tests


def test_readme_runs_the_example_live(checkout: Path) -> None:
    script = readme_commands()[0]
    example = Path(example_dir(script)).name
    check = LIVE_CHECKS.get(example)
    assert check is not None, (
        f"README's example is {example!r}: add a LiveCheck for it to {Path(__file__).name}"
    )
    port, site_port = free_ports(2)
    url = f"http://127.0.0.1:{port}"
    log = checkout / "quickstart-example.log"
    started = time.monotonic()
    proc = run_script(with_ports(script, port, site_port), checkout, log)
    try:
        deadline = started + SERVE_TIMEOUT_S
        with httpx.Client(timeout=2.0) as http:
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"the README's command exited ({proc.returncode}) before serving:\n"
                        + tail(log)
                    )
                try:
                    if http.get(f"{url}/version").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"nothing served on {url} after {SERVE_TIMEOUT_S} s:\n{tail(log)}")
                time.sleep(0.25)
            ready_after = time.monotonic() - started

            seen = asyncio.run(see_live_update(url, check))
            assert len(seen) >= 2

            for path, expected in check.pages:
                response = http.get(f"http://127.0.0.1:{site_port}{path}")
                assert response.status_code == 200, (path, response.text[:500])
                assert expected in response.text, (path, response.text[:500])
        print(f"README example served after {ready_after:.1f} s, live update seen")
    finally:
        stop(proc)


def test_readme_test_command_installs_and_collects(checkout: Path) -> None:
    script = readme_commands()[1]
    runner = re.compile(r"\bpytest(\s+-q)?\s*$")
    assert runner.search(script), f"the README's test command should end with pytest:\n{script}"
    # Collect only: the real run is this very suite.
    script = runner.sub("pytest -q --collect-only -p no:cacheprovider", script)
    log = checkout / "quickstart-tests.log"
    proc = run_script(script, checkout, log)
    try:
        code = proc.wait(SERVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the README's test command did not finish in {SERVE_TIMEOUT_S} s:\n{tail(log)}"
        )
    finally:
        stop(proc)
    output = tail(log, 40)
    assert code == 0, f"the README's test command failed ({code}):\n{output}"
    collected = re.search(r"(\d+) tests? collected", output)
    assert collected and int(collected.group(1)) > 100, output
