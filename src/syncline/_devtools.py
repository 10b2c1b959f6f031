"""Real ``python -m syncline serve|dev`` processes on free ports, for the tests and ``bench/``.

Not public API: a development aid shared by the test suite and the benchmarks
(both import it from the installed package, so neither needs the other on
``sys.path``).

* :func:`free_port` / :func:`free_ports` pick unused TCP ports on 127.0.0.1.
* :class:`ServerProcess` is one server. It always gets **both** ports
  (``--port`` and ``--site-port``): the site port's default (3211) would collide
  with any other server on the machine. The outer ``SYNCLINE_*`` variables are
  not inherited, so a developer's shell cannot change what a test sees; pass
  ``env`` for what the server should get.
* :func:`launch` starts one and waits until ``GET /version`` answers (the
  server reports ready only once both ports listen), retrying on a port race.
* :func:`connect_frame` is the first message of a sync client on a new session.

Every running server is listed by :func:`running` (the test suite attaches
their logs to a failure report) and stopped at interpreter exit at the latest.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (free now; a later bind may still race)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct unused ports (all bound at once, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class ServerStartError(RuntimeError):
    """The server exited, or did not answer ``GET /version``, before it was ready."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the server gets SIGKILL if the parent dies without cleaning up.

    The kernel sends it when the *thread* that started the child ends, so this
    is only used for servers started from the main thread.
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``SYNCLINE_*`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCLINE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """One ``python -m syncline serve|dev`` process on two free ports.

    ``run()`` starts it and waits for ``GET /version`` (``start()`` and
    ``wait_ready()`` separately), ``stop()`` sends SIGTERM, then SIGKILL to its
    process group. As a context manager it runs and stops. ``log()`` has its output (stdout and stderr).
    """

    def __init__(
        self,
        project: Path,
        *,
        mode: str = "serve",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.project = Path(project)
        self.mode = mode
        self.port, self.site_port = free_ports(2)
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after_s = 0.0

    def __repr__(self) -> str:
        return f"<ServerProcess {self.mode} {self.url} pid={self.pid}>"

    def __str__(self) -> str:
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.site_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/sync"

    @property
    def log_path(self) -> Path:
        return self.project / f"server-{self.mode}-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "syncline",
            self.mode,
            "--dir",
            str(self.project),
            "--port",
            str(self.port),
            "--site-port",
            str(self.site_port),
            *self.extra_args,
        ]

    @property
    def admin_key(self) -> str:
        return (self.project / ".syncline" / "admin_key").read_text().strip()

    def start(self) -> ServerProcess:
        may_die_with_parent = sys.platform.startswith("linux") and (
            threading.current_thread() is threading.main_thread()
        )
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env(self.extra_env),
                start_new_session=True,  # its own process group: stopped as one
                preexec_fn=_die_with_parent if may_die_with_parent else None,
            )
        _RUNNING.append(self)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"{self.mode} server exited with code {code} before it was ready:\n"
                        + self.log()
                    )
                try:
                    if http.get(f"{self.url}/version").status_code == 200:
                        self.ready_after_s = time.monotonic() - self.started_at
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"{self.mode} server not ready on {self.url} after {timeout} s:\n"
                        + self.log()
                    )
                time.sleep(0.05)

    def run(self, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        """Start and wait until it serves; on new ports if one was taken meanwhile."""
        for attempt in range(3):
            self.start()
            try:
                return self.wait_ready(timeout)
            except ServerStartError as exc:
                self.stop()
                if attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
                self.port, self.site_port = free_ports(2)
        raise AssertionError("unreachable")

    def restart(self) -> None:
        """Stop, then start again on the same ports with the same data (clients reconnect)."""
        self.stop()
        self.start()
        self.wait_ready()

    def log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL (the whole process group) after STOP_TIMEOUT_S."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(STOP_TIMEOUT_S)
            return proc.returncode
        finally:
            with contextlib.suppress(ValueError):
                _RUNNING.remove(self)

    def __enter__(self) -> ServerProcess:
        try:
            return self.run()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch(
    project: Path,
    *,
    mode: str = "serve",
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = READY_TIMEOUT_S,
) -> ServerProcess:
    """A started server, ready to serve (see :meth:`ServerProcess.run`)."""
    return ServerProcess(project, mode=mode, env=env, args=args).run(timeout)


def connect_frame(session_id: str | None = None) -> str:
    """The ``Connect`` message an official client sends first on a fresh session, as JSON text."""
    return json.dumps(
        {
            "type": "Connect",
            "sessionId": session_id or str(uuid.uuid4()),
            "connectionCount": 0,
            "lastCloseReason": "InitialConnect",
            "clientTs": 0,
        }
    )


def add_query_message(
    path: str, args: dict[str, Any], *, query_id: int, version: int
) -> dict[str, Any]:
    """A ``ModifyQuerySet`` adding one query: query set ``version - 1`` -> ``version``."""
    return {
        "type": "ModifyQuerySet",
        "baseVersion": version - 1,
        "newVersion": version,
        "modifications": [{"type": "Add", "queryId": query_id, "udfPath": path, "args": [args]}],
    }


_RUNNING: list[ServerProcess] = []


def running() -> list[ServerProcess]:
    """The servers started and not yet stopped."""
    return list(_RUNNING)


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - last resort
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


__all__ = [
    "ServerProcess",
    "ServerStartError",
    "connect_frame",
    "free_port",
    "free_ports",
    "launch",
    "running",
    "server_env",
]
