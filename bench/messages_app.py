"""The app the per-call benchmarks share: the side-by-side harness's ``messages`` app.

``send`` inserts a message, ``get`` reads one by id, ``latest`` takes a
channel's newest 20 from an index, ``echo`` touches no storage. Also the CPU
reading the benchmarks divide by operations.
"""

from __future__ import annotations

import os
from pathlib import Path

SCHEMA = """\
from syncline import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({"body": v.string(), "channel": v.string()})
    .index("by_channel", ["channel"]),
})
"""

MESSAGES = """\
from syncline import mutation, query, v


@mutation(args={"body": v.string(), "channel": v.string()})
def send(ctx, body, channel):
    return ctx.db.insert("messages", {"body": body, "channel": channel})


@query(args={"id": v.id("messages")})
def get(ctx, id):
    return ctx.db.get(id)


@query(args={"channel": v.string()})
def latest(ctx, channel):
    return (
        ctx.db.query("messages")
        .with_index("by_channel", lambda q: q.eq("channel", channel))
        .order("desc")
        .take(20)
    )


@query(args={"text": v.string(), "n": v.number()})
def echo(ctx, text, n):
    return {"text": text, "n": n}
"""


def write_functions(functions: Path) -> None:
    """Write the app's ``schema.py`` and ``messages.py`` into ``functions`` (created if missing)."""
    functions.mkdir(parents=True, exist_ok=True)
    (functions / "schema.py").write_text(SCHEMA)
    (functions / "messages.py").write_text(MESSAGES)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
