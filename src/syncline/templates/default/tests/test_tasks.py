"""Tests of the functions, on the real engine (in-process, temporary database, manual clock).

Run them with `pytest`.
"""

from pathlib import Path

import pytest

from syncline import ConvexError, api
from syncline.testing import TestBackend

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
HOUR_MS = 60 * 60 * 1000


@pytest.fixture
def backend():
    with TestBackend(FUNCTIONS) as t:
        yield t


def test_add_and_list(backend):
    backend.mutation(api.tasks.add, {"text": "Write the docs"})
    backend.mutation(api.tasks.add, {"text": "  Ship it  "})
    assert [t["text"] for t in backend.query(api.tasks.list)] == ["Ship it", "Write the docs"]


def test_empty_text_is_refused(backend):
    with pytest.raises(ConvexError) as error:
        backend.mutation(api.tasks.add, {"text": "   "})
    assert error.value.data["code"] == "EMPTY_TEXT"


def test_done_tasks_are_found_by_index(backend):
    task = backend.mutation(api.tasks.add, {"text": "Buy milk"})
    backend.mutation(api.tasks.add, {"text": "Call mum"})
    backend.mutation(api.tasks.set_done, {"id": task, "done": True})
    assert [t["text"] for t in backend.query(api.tasks.by_status, {"done": True})] == ["Buy milk"]


def test_action_adds_one_task_per_line(backend):
    ids = backend.action(api.tasks.add_lines, {"text": "one\n\ntwo\n"})
    assert len(ids) == 2
    assert {t["text"] for t in backend.query(api.tasks.list)} == {"one", "two"}


def test_cron_clears_old_done_tasks(backend):
    old = backend.mutation(api.tasks.add, {"text": "Old"})
    backend.mutation(api.tasks.set_done, {"id": old, "done": True})
    backend.advance(23 * HOUR_MS)
    assert len(backend.query(api.tasks.list)) == 1  # done, but not a day old yet
    backend.advance(2 * HOUR_MS)
    assert backend.query(api.tasks.list) == []


def test_http_endpoints(backend):
    created = backend.fetch("/tasks", method="POST", body={"text": "Over HTTP"})
    assert created.status == 201
    listed = backend.fetch("/tasks")
    assert listed.json() == [{"id": created.json()["id"], "text": "Over HTTP", "done": False}]
    assert backend.fetch("/tasks", method="POST", body="not json").status == 400
