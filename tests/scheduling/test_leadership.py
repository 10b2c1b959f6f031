"""One scheduler among several processes: the lease, and taking over from a dead leader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from syncline.clock import ManualClock
from syncline.scheduling.leadership import FileLease, SchedulerLeadership


class FakeScheduler:
    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    async def start(self) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False


def test_the_lease_is_exclusive_and_freed_on_release(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path / "lock"), FileLease(tmp_path / "lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.try_acquire()  # already ours
    first.release()
    assert second.try_acquire()
    second.release()


def test_the_lease_of_a_killed_process_is_free(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from syncline.scheduling.leadership import FileLease\n"
            f"assert FileLease(Path({str(path)!r})).try_acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        lease = FileLease(path)
        assert not lease.try_acquire()
        holder.kill()
        holder.wait()
        assert lease.try_acquire()
        lease.release()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_one_leads_and_another_takes_over_when_it_stops(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_takeover(tmp_path), 20))


async def _takeover(tmp_path: Path) -> None:
    clock = ManualClock()
    schedulers = [FakeScheduler(), FakeScheduler()]
    leaders = [
        SchedulerLeadership(s, FileLease(tmp_path / "lock"), clock=clock, retry_s=0.5, name=n)
        for s, n in zip(schedulers, ["a", "b"], strict=True)
    ]
    await leaders[0].start()
    await leaders[1].start()
    assert [s.running for s in schedulers] == [True, False]
    assert leaders[0].leading and not leaders[1].leading

    clock.advance(5000)  # retries while the lease is held change nothing
    await asyncio.sleep(0.01)
    assert [s.running for s in schedulers] == [True, False]

    await leaders[0].stop()  # stops its scheduler first, then frees the lease
    assert not schedulers[0].running
    clock.advance(500)
    for _ in range(100):
        await asyncio.sleep(0.001)
        if schedulers[1].running:
            break
    assert schedulers[1].running and leaders[1].leading
    assert schedulers[1].starts == 1
    await leaders[1].stop()
    assert not schedulers[1].running and not leaders[1].lease.held
