"""Random bytes drawn in blocks: as ``os.urandom``, never the same bytes twice."""

from __future__ import annotations

import os
import threading

from syncline import randomness
from syncline.randomness import BLOCK_BYTES, random_bytes


def test_lengths_and_no_repeats_across_blocks() -> None:
    seen = set()
    total = 0
    for n in (1, 8, 16, 33, 100, BLOCK_BYTES, BLOCK_BYTES + 1):
        for _ in range(300):
            chunk = random_bytes(n)
            assert len(chunk) == n
            if n >= 8:
                assert chunk not in seen
                seen.add(chunk)
            total += n
    assert total > 4 * BLOCK_BYTES  # several blocks were drawn


def test_threads_get_different_bytes() -> None:
    results: dict[int, list[bytes]] = {}

    def draw(i: int) -> None:
        results[i] = [random_bytes(16) for _ in range(500)]

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [chunk for chunks in results.values() for chunk in chunks]
    assert len(set(everything)) == len(everything) == 2000


def test_a_forked_child_never_hands_out_the_parents_next_bytes() -> None:
    random_bytes(16)  # this thread has a block with bytes left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what would the parent have drawn next?
        try:
            os.write(write, random_bytes(64))
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while len(child) < 64:
        part = os.read(read, 64)
        if not part:
            break
        child += part
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 64
    assert random_bytes(64) != child
    assert randomness._pool.block.find(child) == -1
