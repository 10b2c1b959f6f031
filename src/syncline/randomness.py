"""Random bytes from the OS, drawn in blocks: ids and request ids are made on every call.

:func:`random_bytes` gives ``os.urandom``'s bytes, but asks the OS for 4 KiB at a
time per thread. Each ``os.urandom`` call is a system call that lets go of the GIL,
and on a busy server the thread then waits for it behind whatever else runs: the
event loop making a request id, or a mutation thread an id, would queue behind
other threads on every call.

The blocks are per thread, and a forked child starts with none: two processes (or
threads) never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_bytes"]

#: bytes asked of the OS at a time, per thread
BLOCK_BYTES = 4096


class _Pool(threading.local):
    block: bytes = b""
    used: int = 0


_pool = _Pool()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the OS's cryptographic source (as ``os.urandom(n)``)."""
    pool = _pool
    start = pool.used
    end = start + n
    if end > len(pool.block):
        if n > BLOCK_BYTES:
            return os.urandom(n)
        pool.block = os.urandom(BLOCK_BYTES)
        start, end = 0, n
    pool.used = end
    return pool.block[start:end]


def _forget_after_fork() -> None:
    # The child's copy of this thread's block is the parent's: never hand it out.
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_after_fork)
