"""The committer's optimistic-concurrency metrics, with the interleavings of test_optimistic."""

from __future__ import annotations

from pathlib import Path

from test_optimistic import _counter, _open, _race

from syncline import metrics


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def test_conflicts_retries_and_locked_fallbacks_are_counted(tmp_path: Path) -> None:
    conflicts = sample("syncline_occ_conflicts_total")
    retries = sample("syncline_occ_retries_total")
    fallbacks = sample("syncline_occ_locked_fallbacks_total")
    with _open(tmp_path / "retry.sqlite3") as db:
        _race(db, _counter(db))
    assert sample("syncline_occ_conflicts_total") - conflicts == 1
    assert sample("syncline_occ_retries_total") - retries == 1
    assert sample("syncline_occ_locked_fallbacks_total") == fallbacks
    with _open(tmp_path / "locked.sqlite3", optimistic_attempts=1) as db:
        _race(db, _counter(db))
    assert sample("syncline_occ_conflicts_total") - conflicts == 2
    assert sample("syncline_occ_retries_total") - retries == 1
    assert sample("syncline_occ_locked_fallbacks_total") - fallbacks == 1
