"""Request ids: 16 hex digits that grow with time (the log history indexes them)."""

from __future__ import annotations

import re
import time

from syncline.functions.outcomes import Outcome, new_request_id


def test_request_ids_are_16_hex_digits_that_sort_by_millisecond() -> None:
    first = [new_request_id() for _ in range(200)]
    time.sleep(0.002)
    later = [new_request_id() for _ in range(200)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in first + later)
    assert max(first) < min(later)
    assert len(set(first + later)) > 390  # 24 random bits each within a millisecond


def test_an_outcome_keeps_its_request_id() -> None:
    outcome = Outcome("m:f", None)
    assert outcome.request_id == outcome.request_id
    assert re.fullmatch(r"[0-9a-f]{16}", outcome.request_id)
