"""The entry point of one worker process of ``syncline serve --workers N``.

Started by the parent (:class:`~syncline.server.workers.Supervisor`) as
``python -m syncline.commands.worker``, never by hand: it finds its sockets
and its options in the environment the parent set.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from syncline.commands.serve import OPTIONS_ENV, serve_worker
from syncline.server.workers import WORKER_ENV, WorkerFds


def _stop_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the parent dies, so no worker outlives its server."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before we could ask
        sys.exit(1)


def main() -> None:
    fds = WorkerFds.from_env()
    raw = os.environ.get(OPTIONS_ENV)
    if fds is None or raw is None:
        sys.exit("syncline.commands.worker is started by `syncline serve --workers N`")
    # Not for anything this process starts (user code may run subprocesses).
    del os.environ[WORKER_ENV], os.environ[OPTIONS_ENV]
    _stop_with_parent(fds.parent)
    serve_worker(fds, json.loads(raw))


if __name__ == "__main__":
    main()
