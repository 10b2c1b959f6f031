"""syncline.metrics: what the hooks count, bounded labels, and the multiprocess merge.

The families live in one process-wide registry, so every check here compares
a sample before and after the calls it makes. The committer's conflict counts are checked in
``tests/database/test_committer_metrics.py``; the end-to-end checks of every
family against a real server are in ``tests/e2e/test_operations.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from conftest import write_functions
from syncline import metrics
from syncline.errors import ConvexError
from syncline.testing import TestBackend

FILES = {
    "tasks.py": """
        from syncline import ConvexError, mutation, query, v


        @query
        def count(ctx):
            return len(ctx.db.query("tasks").collect())


        @mutation(args={"title": v.string()})
        def add(ctx, title):
            if title == "refused":
                raise ConvexError("refused")
            if title == "crash":
                raise RuntimeError("crash")
            return ctx.db.insert("tasks", {"title": title})
    """,
}


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def calls(kind: str, function: str, status: str) -> float:
    return sample("syncline_function_calls_total", kind=kind, function=function, status=status)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[TestBackend]:
    functions = write_functions(tmp_path / "functions", FILES)
    with TestBackend(functions, data_dir=tmp_path / "data") as backend:
        yield backend


def test_calls_are_counted_by_kind_function_and_status(backend: TestBackend) -> None:
    before = {
        key: calls(*key)
        for key in (
            ("query", "tasks:count", "success"),
            ("mutation", "tasks:add", "success"),
            ("mutation", "tasks:add", "user_error"),
            ("mutation", "tasks:add", "system_error"),
        )
    }
    durations = sample(
        "syncline_function_duration_seconds_count",
        kind="mutation",
        function="tasks:add",
        status="success",
    )
    backend.mutation("tasks:add", {"title": "a"})
    backend.mutation("tasks:add", {"title": "b"})
    assert backend.query("tasks:count") == 2
    with pytest.raises(ConvexError):
        backend.mutation("tasks:add", {"title": "refused"})
    with pytest.raises(RuntimeError):
        backend.mutation("tasks:add", {"title": "crash"})
    after = {key: calls(*key) - value for key, value in before.items()}
    assert after == {
        ("query", "tasks:count", "success"): 1,
        ("mutation", "tasks:add", "success"): 2,
        ("mutation", "tasks:add", "user_error"): 1,
        ("mutation", "tasks:add", "system_error"): 1,
    }
    assert (
        sample(
            "syncline_function_duration_seconds_count",
            kind="mutation",
            function="tasks:add",
            status="success",
        )
        - durations
        == 2
    )


def test_paths_of_no_loaded_function_share_one_label(backend: TestBackend) -> None:
    before = calls("query", metrics.UNKNOWN_FUNCTION, "user_error")
    for i in range(50):
        with pytest.raises(Exception, match="Could not find"):
            backend.query(f"tasks:missing{i}")
    assert calls("query", metrics.UNKNOWN_FUNCTION, "user_error") - before == 50
    exposition = metrics.exposition().decode()
    assert "missing" not in exposition  # no series per typo


def test_calls_are_not_counted_when_counting_is_off(backend: TestBackend) -> None:
    before = calls("query", "tasks:count", "success")
    backend.app.executor.count_calls = False
    backend.query("tasks:count")
    assert calls("query", "tasks:count", "success") == before


def test_commit_batches_are_sized_and_timed(backend: TestBackend) -> None:
    batches = sample("syncline_commit_batch_size_count")
    commits = sample("syncline_commit_batch_size_sum")
    durable = sample("syncline_commit_durable_seconds_count")
    backend.mutation("tasks:add", {"title": "one"})
    assert sample("syncline_commit_batch_size_count") - batches == 1
    assert sample("syncline_commit_batch_size_sum") - commits == 1
    assert sample("syncline_commit_durable_seconds_count") - durable == 1
    assert sample("syncline_commit_batch_seconds_sum") > 0


def _histogram_samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_many_observations_at_once_count_as_one_at_a_time() -> None:
    amounts = [0.0001, 0.0005, 0.0006, 0.001, 0.003, 0.003, 0.2, 7.0, 301.0, 0.0]
    buckets = (0.0005, 0.001, 0.0025, 0.1, 5.0, 300.0)
    batched = metrics.BatchedHistogram("batched_seconds", "test", buckets=buckets, registry=None)
    single = Histogram("single_seconds", "test", buckets=buckets, registry=None)
    batched.observe_many(amounts)
    batched.observe_many([])
    for amount in amounts:
        single.observe(amount)
    got = {
        (name.replace("batched", "single"), le): value
        for (name, le), value in _histogram_samples(batched).items()
    }
    assert got == _histogram_samples(single)
    assert got[("single_seconds_count", "")] == len(amounts)


def test_fan_out_latencies_reach_the_histogram_when_flushed() -> None:
    before = sample("syncline_fanout_latency_seconds_count")
    metrics.note_published(10**15)
    for _ in range(3):
        metrics.observe_fanout(10**15)
    metrics.observe_fanout(10**15 + 1)  # no such commit: ignored
    metrics.flush_fanout()
    assert sample("syncline_fanout_latency_seconds_count") - before == 3
    metrics.observe_fanout(10**15)
    metrics.exposition()  # a scrape takes what is pending
    assert sample("syncline_fanout_latency_seconds_count") - before == 4


def test_exposition_parses_and_carries_the_process_collector() -> None:
    names = {
        family.name for family in text_string_to_metric_families(metrics.exposition().decode())
    }
    assert {
        "syncline_function_calls",
        "syncline_function_duration_seconds",
        "syncline_occ_conflicts",
        "syncline_commit_batch_size",
        "syncline_committer_queue_depth",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
    } <= names


WORKER = textwrap.dedent(
    """
    import sys
    from syncline import metrics

    metrics.observe_call("query", "tasks:count", "success", 0.01)
    metrics.SYNC_SESSIONS.inc(int(sys.argv[1]))
    """
)


def test_workers_metrics_are_merged_and_an_exited_workers_gauges_dropped(
    tmp_path: Path,
) -> None:
    folder = metrics.prepare_multiprocess_dir(tmp_path / "metrics")
    (folder / "counter_1.db").write_bytes(b"")  # a leftover of an earlier run
    metrics.prepare_multiprocess_dir(folder)
    assert not list(folder.iterdir())
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_ENV: str(folder)}
    pids = []
    for sessions in (2, 3):
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(sessions)], env=env, check=True, timeout=60
        )
        assert proc.returncode == 0
    for file in folder.glob("gauge_livesum_*.db"):
        pids.append(int(file.stem.rpartition("_")[2]))
    assert len(pids) == 2

    def merged() -> dict[str, float]:
        text = metrics.exposition(folder).decode()
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name in ("syncline_function_calls_total", "syncline_sync_sessions")
        }

    assert merged() == {"syncline_function_calls_total": 2.0, "syncline_sync_sessions": 5.0}
    # The supervisor forgets an exited worker: its live gauges go, its counts stay.
    for pid in pids:
        metrics.forget_process(pid, folder)
    assert not list(folder.glob("gauge_livesum_*.db"))
    assert merged().get("syncline_sync_sessions", 0.0) == 0.0
    assert merged()["syncline_function_calls_total"] == 2.0
