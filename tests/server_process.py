"""A real ``python -m syncline serve|dev`` process for tests (API port and site port).

``SynclineProcess(project, mode="serve").start()`` picks two free ports,
starts the server and waits until ``GET /version`` answers (the server
reports ready only once both ports listen). ``stop()`` sends SIGTERM, then
SIGKILL. Use it as a context manager; on failure, ``log()`` has its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

READY_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SynclineProcess:
    def __init__(self, project: Path, *, mode: str = "serve") -> None:
        self.project = project
        self.mode = mode
        self.port = free_port()
        self.site_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site_url = f"http://127.0.0.1:{self.site_port}"
        self.log_path = project / f"syncline-{mode}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_key(self) -> str:
        return (self.project / ".syncline" / "admin_key").read_text().strip()

    def start(self) -> SynclineProcess:
        command = [
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
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=1.0) as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"server exited with {code} before ready:\n{self.log()}")
                try:
                    if http.get(f"{self.url}/version").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S} s:\n{self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return proc.returncode

    def __enter__(self) -> SynclineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
