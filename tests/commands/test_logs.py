"""``syncline logs --follow`` on a server: the live stream, filtered, after a catch-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from syncline.commands.deployment import Remote
from syncline.commands.logs import LIVE_PATH, _follow_live


class StreamingRemote(Remote):
    """A server whose live stream is the given lines."""

    lines: list[dict[str, Any]]

    def stream_lines(self, path: str) -> Iterator[str]:
        assert path == LIVE_PATH
        for line in self.lines:
            yield orjson.dumps(line).decode()


def _call(path: str, request_id: str, status: str = "success") -> dict[str, Any]:
    return {
        "type": "call",
        "path": path,
        "requestId": request_id,
        "timestamp": 1.0,
        "status": status,
    }


def _follow(params: dict[str, str], lines: list[dict[str, Any]], catch_up: Any) -> list[str]:
    remote = StreamingRemote("http://127.0.0.1:1", "key")
    object.__setattr__(remote, "lines", lines)
    shown: list[dict[str, Any]] = []
    _follow_live(remote, params, shown.extend, catch_up)
    return [f"{r['path']} {r['requestId']}" for r in shown]


def test_follow_filters_the_stream_and_skips_what_the_catch_up_printed() -> None:
    lines = [
        {"type": "connected"},
        _call("tasks:add", "r1"),  # finished before the stream opened: printed by the catch-up
        _call("tasks:add", "r2"),
        _call("tasks:list", "r3"),  # another function
        _call("tasks:add", "r4", status="failure"),
        {"type": "dropped", "count": 2},
        _call("tasks:add", "r5"),
    ]
    history = [{"id": 7, **_call("tasks:add", "r0")}, {"id": 8, **_call("tasks:add", "r1")}]
    for record in history:
        record.pop("type")
    shown = _follow({"function": "tasks:add", "status": "success"}, lines, lambda: history)
    assert shown == ["tasks:add r0", "tasks:add r1", "tasks:add r2", "tasks:add r5"]
    # Without a catch-up (no history shown first) every matching call of the stream.
    assert _follow({"function": "tasks"}, lines, None) == [
        "tasks:add r1",
        "tasks:add r2",
        "tasks:list r3",
        "tasks:add r4",
        "tasks:add r5",
    ]
