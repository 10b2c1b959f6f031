"""An S3 endpoint for the tests: moto in server mode, in a process of its own.

:class:`MotoS3` starts ``python -m moto.server`` on a free port of 127.0.0.1
and waits until it answers. Each test gets its own bucket (:meth:`MotoS3.new_bucket`)
so tests never see each other's objects. moto comes with the dev extra
(``moto[s3]`` with Flask); without it the S3 tests skip locally and fail under ``CI=true``
(:mod:`harness`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from harness import require_module
from syncline._devtools import free_port

__all__ = ["CREDENTIALS", "MotoS3", "s3_env"]

#: What the tests sign with (moto accepts any key).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}
READY_TIMEOUT_S = 30.0


def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials, and no shared AWS files or outer AWS settings."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


class MotoS3:
    """A moto server process; :attr:`endpoint` is its URL."""

    def __init__(self) -> None:
        require_module("moto.server", "pip install 'moto[s3]' flask flask-cors (in the dev extra)")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._buckets = itertools.count(1)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"moto server exited ({self._proc.returncode}): {err}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not answer in time") from None
                time.sleep(0.1)
        if self._proc.stderr is not None:
            self._proc.stderr.close()  # its request log is not needed; never let it fill a pipe
            self._proc.stderr = None

    def new_bucket(self, *, versioned: bool = False) -> str:
        """A new empty bucket's name."""
        name = f"bucket-{next(self._buckets)}"
        with self.client() as client:
            client.put(f"{self.endpoint}/{name}").raise_for_status()
            if versioned:
                body = (
                    '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    "<Status>Enabled</Status></VersioningConfiguration>"
                )
                client.put(f"{self.endpoint}/{name}?versioning", content=body).raise_for_status()
        return name

    def url(self, bucket: str, prefix: str = "files") -> str:
        """The ``--files`` URL of ``bucket`` with its endpoint as a query option."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"

    @staticmethod
    def client() -> httpx.Client:
        # moto in server mode does not check signatures: plain HTTP sets buckets up.
        return httpx.Client(timeout=10.0)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def moto_session() -> Iterator[MotoS3]:
    """Body of the session fixture ``moto_s3`` (tests/conftest.py)."""
    server = MotoS3()
    try:
        yield server
    finally:
        server.stop()
