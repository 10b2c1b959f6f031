"""A private PostgreSQL cluster for a test that stops and restarts the server.

The shared server (:mod:`postgres_databases`) cannot be restarted under other
tests, so :func:`private_cluster` makes its own with the installed binaries
(``initdb``/``pg_ctl``: Debian's under ``/usr/lib/postgresql/<version>/bin``,
or on ``PATH``) in a temporary folder, run as the ``postgres`` user when the
tests run as root (PostgreSQL refuses to run as root).

Its port lies below the kernel's ephemeral port range: while the server is
down, no outgoing connection (and no test's ``bind(0)``) can be handed that
port, so the restart binds it again.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import require_or_skip

__all__ = ["PrivateCluster", "ports_below_ephemeral_range", "private_cluster"]


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(versions[-1]).parent if versions else None


def ports_below_ephemeral_range(count: int = 1) -> list[int]:
    """``count`` distinct free ports that the kernel never hands out by itself, so a
    server restarted on one finds it free again (unless another test picked it this way)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        for _ in range(200 * count):
            sock = held.enter_context(socket.socket())
            port = rng.randrange(max(1024, low - 12000), low)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free port below the ephemeral range")


class PrivateCluster:
    """One PostgreSQL server on 127.0.0.1:``port``, trust auth, database ``postgres``."""

    def __init__(self, bin_dir: Path, folder: Path, as_postgres: bool) -> None:
        self.bin_dir = bin_dir
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.folder = folder
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        (self.port,) = ports_below_ephemeral_range()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._prefix, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} {args[:2]} failed:\n{result.stderr}\n{log[-3000:]}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` is a crash (recovery from the WAL on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A running private cluster, stopped and deleted afterwards (skip without the binaries)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        require_or_skip("no PostgreSQL server binaries (apt-get install postgresql)")
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="syncline-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivateCluster(bin_dir, folder, as_postgres)
    try:
        cluster.init()
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                (cluster.port,) = ports_below_ephemeral_range()  # taken since it was picked
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
