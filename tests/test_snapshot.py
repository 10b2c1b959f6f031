"""Export and import (``syncline.snapshot``, ``syncline export|import``).

Round trips run between two real deployments (``TestBackend`` on SQLite
files, with their file stores): everything exported from one and imported
into the other must be identical, ids and ``_creationTime`` included.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from conftest import MakeBackend, blob_keys, sub_location, use_files, write_functions
from syncline.application import DataDirLock
from syncline.cli import main
from syncline.database.bulk import TableNumberConflict
from syncline.database.catalog import BY_ID
from syncline.database.database import Database
from syncline.database.writes import Commit
from syncline.snapshot import (
    DataImportError,
    ImportMode,
    export_snapshot,
    export_table,
    from_export_json,
    import_snapshot,
    import_table,
    to_export_json,
)
from syncline.testing import TestBackend
from syncline.values.ids import new_id, table_number_of
from syncline.values.json import from_json_bytes, to_json_bytes
from syncline.values.keys import values_equal
from syncline.values.types import INT64_MAX, INT64_MIN, Int64

TABLES = """
    "users": define_table({"name": v.string(), "avatar": v.optional(v.id("_storage"))})
        .index("by_name", ["name"]),
    "items": define_table({
        "owner": v.id("users"),
        "value": v.any(),
        "count": v.int64(),
        "blob": v.bytes(),
        "score": v.number(),
        "meta": v.object({"tags": v.array(v.string()), "note": v.optional(v.string())}),
    }).index("by_owner_score", ["owner", "score"]).index("by_note", ["meta.note"]),
"""


def _schema(*, reverse: bool = False) -> str:
    users, items = TABLES.strip().split('\n    "items"')
    items = '"items"' + items
    body = f"{items}\n    {users}" if reverse else f"{users}\n    {items}"
    return (
        "from syncline import define_schema, define_table, v\n\n"
        f"schema = define_schema({{\n    {body}\n}})\n"
    )


FUNCTIONS = """
    from syncline import action, mutation, query, v


    @query(args={"owner": v.id("users")})
    def by_owner(ctx, owner):
        return (
            ctx.db.query("items")
            .with_index("by_owner_score", lambda q: q.eq("owner", owner))
            .order("desc")
            .collect()
        )


    @query(args={"note": v.string()})
    def by_note(ctx, note):
        return ctx.db.query("items").with_index("by_note", lambda q: q.eq("meta.note", note)).collect()


    @query(args={"name": v.string()})
    def user(ctx, name):
        return ctx.db.query("users").with_index("by_name", lambda q: q.eq("name", name)).unique()


    @mutation(args={"name": v.string()})
    def add_user(ctx, name):
        return ctx.db.insert("users", {"name": name})


    @action(args={"data": v.bytes(), "type": v.string()})
    async def store(ctx, data, type):
        return await ctx.storage.store(data, content_type=type)


    @action(args={"id": v.id("_storage")})
    async def read(ctx, id):
        return await ctx.storage.get(id)
"""

EVERY_VALUE: list[Any] = [
    None,
    True,
    False,
    0.0,
    -0.0,
    1.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    5e-324,
    1e300,
    Int64(0),
    Int64(INT64_MIN),
    Int64(INT64_MAX),
    "",
    "héllo wörld ✓ 🌍 \x00 tab\t",
    b"",
    b"\x00\x01\xfe\xff",
    [],
    {},
    [1.0, [Int64(2), [None, b"x"]], {"a": {"b": [float("nan")]}}],
    {"deep": {"er": {"est": [Int64(-1), -0.0, "s", True]}}, "bytes": b"\xff"},
]


def _backend(
    make_backend: MakeBackend, *, reverse: bool = False, files: str | None = None
) -> TestBackend:
    """A deployment of the test schema, with its blobs at ``files`` if given."""
    t = make_backend({"schema.py": _schema(reverse=reverse), "app.py": FUNCTIONS})
    return t if files is None else use_files(t, files)


def _fill(t: TestBackend) -> dict[str, Any]:
    """Users, items holding every kind of value, and one stored file per user."""
    ids: dict[str, Any] = {"users": [], "items": [], "files": []}
    for name in ("ada", "grace"):
        file_id = t.action("app:store", {"data": f"avatar of {name}".encode(), "type": "image/png"})
        ids["files"].append(file_id)
        user = t.run(
            lambda ctx, n=name, f=file_id: ctx.db.insert("users", {"name": n, "avatar": f})
        )
        ids["users"].append(user)

    def insert_items(ctx: Any) -> list[str]:
        out = []
        for i, value in enumerate(EVERY_VALUE):
            out.append(
                ctx.db.insert(
                    "items",
                    {
                        "owner": ids["users"][i % 2],
                        "value": value,
                        "count": Int64(i * 10**15),
                        "blob": bytes([i, 0, 255]),
                        "score": float(i),
                        "meta": {"tags": [f"t{i}"], **({"note": "even"} if i % 2 == 0 else {})},
                    },
                )
            )
        return out

    ids["items"] = t.run(insert_items)
    return ids


def _documents(database: Database, table: str) -> list[dict[str, Any]]:
    """Every document of ``table`` (decoded values), in ``_id`` order, read from storage."""
    info = database.catalog.table(table)
    if info is None:
        return []
    out: list[dict[str, Any]] = []
    conn = database.persistence.reader()
    try:
        start = b""
        while True:
            rows = conn.scan(info.indexes[BY_ID].id, start, b"\xff", reverse=False, limit=500)
            out.extend(from_json_bytes(raw) for _key, _id, raw in rows)  # type: ignore[misc]
            if len(rows) < 500:
                return out
            start = rows[-1][0] + b"\x00"
    finally:
        database.persistence.release_reader(conn)


# --------------------------------------------------------------------------- value codec


def test_export_json_is_lossless_for_every_value() -> None:
    for value in EVERY_VALUE:
        text = orjson.dumps(to_export_json(value))
        assert values_equal(from_export_json(orjson.loads(text)), value), (value, text)


def test_export_json_encoding_follows_convex() -> None:
    assert orjson.dumps(to_export_json(Int64(5))) == b"5"
    assert orjson.dumps(to_export_json(5.0)) == b"5.0"
    assert orjson.dumps(to_export_json(-0.0)) == b"-0.0"
    assert to_export_json(float("inf")) == {"$float": "AAAAAAAA8H8="}
    assert to_export_json(b"\x00\xff") == {"$bytes": "AP8="}
    decoded = from_export_json(orjson.loads(b'{"n": 5, "f": 5.0, "big": 9223372036854775807}'))
    assert type(decoded["n"]) is Int64 and type(decoded["f"]) is float  # type: ignore[index]
    with pytest.raises(Exception, match="outside the int64 range"):
        from_export_json(orjson.loads(b'{"a": [1, 9223372036854775808]}'))


# --------------------------------------------------------------------------- snapshot ZIP


def test_zip_round_trip_restores_everything(
    make_backend: MakeBackend, tmp_path: Path, files_location: str
) -> None:
    source = _backend(make_backend, files=sub_location(files_location, "source"))
    ids = _fill(source)
    assert source.app.storage is not None
    snapshot = tmp_path / "snapshot.zip"
    exported = export_snapshot(source.database, snapshot, blobs=source.app.storage.blobs)
    assert exported.tables == {"users": 2, "items": len(EVERY_VALUE), "_storage": 2}
    assert exported.files == 2 and not exported.warnings

    # The target declares its tables in the other order, so they got each other's numbers:
    # the import must renumber them to keep the snapshot's ids.
    target = _backend(make_backend, reverse=True, files=sub_location(files_location, "target"))
    assert target.database.catalog.table("items").number == table_number_of(ids["users"][0])  # type: ignore[union-attr]
    assert target.app.storage is not None
    result = import_snapshot(target.database, snapshot, blobs=target.app.storage.blobs)
    assert result.tables == {"users": 2, "items": len(EVERY_VALUE), "_storage": 2}
    assert result.files == 2 and not result.warnings

    for table in ("users", "items", "_storage"):
        before, after = _documents(source.database, table), _documents(target.database, table)
        assert [d["_id"] for d in before] == [d["_id"] for d in after]
        assert values_equal(before, after), table
    # Queries by index work on the imported data (index entries were written).
    owned = target.query("app:by_owner", {"owner": ids["users"][0]})
    assert [d["score"] for d in owned] == sorted(
        (float(i) for i in range(len(EVERY_VALUE)) if i % 2 == 0), reverse=True
    )
    assert len(target.query("app:by_note", {"note": "even"})) == len(owned)
    assert target.query("app:user", {"name": "grace"})["_id"] == ids["users"][1]
    # Stored files came back with their contents, readable through ctx.storage.
    assert target.action("app:read", {"id": ids["files"][1]}) == b"avatar of grace"
    # New writes after the import get new ids in the right tables.
    new_user = target.mutation("app:add_user", {"name": "linus"})
    assert table_number_of(new_user) == table_number_of(ids["users"][0])


def test_zip_layout_is_convex_snapshot_layout(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = _backend(make_backend)
    ids = _fill(t)
    assert t.app.storage is not None
    path = tmp_path / "snapshot.zip"
    export_snapshot(t.database, path, blobs=t.app.storage.blobs)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        tables = [orjson.loads(line) for line in archive.read("_tables/documents.jsonl").split()]
        items = archive.read("items/documents.jsonl").decode().splitlines()
        storage = [orjson.loads(x) for x in archive.read("_storage/documents.jsonl").split()]
        schema = archive.read("items/generated_schema.jsonl")
        avatar = archive.read(f"_storage/{ids['files'][0]}.png")
    assert {
        "README.md",
        "_tables/documents.jsonl",
        "users/documents.jsonl",
        "users/generated_schema.jsonl",
        "items/documents.jsonl",
        "items/generated_schema.jsonl",
        "_storage/documents.jsonl",
    } <= names
    assert not any(n.startswith("_scheduled_functions") for n in names)
    assert tables == [
        {"name": "users", "id": table_number_of(ids["users"][0])},
        {"name": "items", "id": table_number_of(ids["items"][0])},
    ]
    assert schema == b'"uniform"\n'
    assert len(items) == len(EVERY_VALUE)
    first = orjson.loads(items[0])
    assert first["_id"] == ids["items"][0]  # _creationTime order = insertion order
    assert '"count":0,' in items[0] and '"score":0.0' in items[0]
    assert '"blob":{"$bytes":"AAD/"}' in items[0]
    assert {"_id", "_creationTime", "sha256", "size", "contentType"} == set(storage[0])
    assert storage[0]["size"] == len(b"avatar of ada") and type(storage[0]["size"]) is int
    assert avatar == b"avatar of ada"


def test_zip_import_refuses_tables_with_data_unless_told(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    source = _backend(make_backend)
    _fill(source)
    path = tmp_path / "s.zip"
    export_snapshot(source.database, path, include_files=False)

    target = _backend(make_backend)
    target.mutation("app:add_user", {"name": "someone"})
    with pytest.raises(DataImportError, match=r"`users` \(1 documents\).*--replace"):
        import_snapshot(target.database, path)
    assert len(_documents(target.database, "users")) == 1
    assert not _documents(target.database, "items")

    # Same schema order, hence same table numbers: --append adds to what is there.
    result = import_snapshot(target.database, path, mode=ImportMode.APPEND)
    assert result.tables["users"] == 2
    assert len(_documents(target.database, "users")) == 3

    result = import_snapshot(target.database, path, mode=ImportMode.REPLACE)
    assert result.deleted == {"users": 3, "items": len(EVERY_VALUE)}
    assert values_equal(_documents(target.database, "users"), _documents(source.database, "users"))


def test_zip_import_with_a_bad_row_imports_nothing(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    source = _backend(make_backend)
    _fill(source)
    good = tmp_path / "good.zip"
    export_snapshot(source.database, good, include_files=False)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "items/documents.jsonl":
                lines = data.split(b"\n")
                lines[3] = lines[3].replace(b'"score":3.0', b'"score":"three"')
                lines[5] = b"{not json"
                data = b"\n".join(lines)
            dst.writestr(name, data)

    target = _backend(make_backend)
    with pytest.raises(DataImportError) as caught:
        import_snapshot(target.database, bad)
    error = caught.value
    assert error.bad_rows == 2
    assert [(r.file, r.line) for r in error.rows] == [
        ("items/documents.jsonl", 4),
        ("items/documents.jsonl", 6),
    ]
    assert "does not match the schema" in error.rows[0].message
    assert "score" in error.rows[0].message
    assert "Invalid JSON" in error.rows[1].message
    assert "nothing was imported" in str(error)
    # users came before items in the same import: rolled back too.
    assert not _documents(target.database, "users")
    assert not _documents(target.database, "items")


def test_zip_without_generated_schema_reads_wire_json(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "handmade.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "export/notes/documents.jsonl",
            b'{"text": "a", "n": 1}\n{"text": "b", "n": {"$integer": "BQAAAAAAAAA="}}\n',
        )
    t = make_backend({"app.py": FUNCTIONS})
    result = import_snapshot(t.database, path)
    assert result.tables == {"notes": 2}
    notes = sorted(_documents(t.database, "notes"), key=lambda d: d["text"])
    assert notes[0]["n"] == 1.0 and type(notes[0]["n"]) is float
    assert notes[1]["n"] == Int64(5) and type(notes[1]["n"]) is Int64


def test_zip_with_legacy_generated_schema_warns(make_backend: MakeBackend, tmp_path: Path) -> None:
    path = tmp_path / "old.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/documents.jsonl", b'{"text": "a"}\n')
        archive.writestr("notes/generated_schema.jsonl", b'"{text: string}"\n')
    t = make_backend({"app.py": FUNCTIONS})
    result = import_snapshot(t.database, path)
    assert result.tables == {"notes": 1}
    assert any("older inferred-shape format" in w for w in result.warnings)


def test_table_number_conflict_with_a_table_that_has_data(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    source = _backend(make_backend)
    ids = _fill(source)
    path = tmp_path / "s.zip"
    export_snapshot(source.database, path, include_files=False)
    target = _backend(make_backend, reverse=True)
    # The target's `items` holds the number of the snapshot's `users`; give it a document.
    items_number = target.database.catalog.table("items").number  # type: ignore[union-attr]
    assert items_number == table_number_of(ids["users"][0])
    owner = target.mutation("app:add_user", {"name": "local"})
    target.run(
        lambda ctx: ctx.db.insert(
            "items",
            {
                "owner": owner,
                "value": 1.0,
                "count": Int64(1),
                "blob": b"",
                "score": 1.0,
                "meta": {"tags": []},
            },
        )
    )
    with pytest.raises(TableNumberConflict, match="items"):
        import_snapshot(target.database, path, mode=ImportMode.APPEND)
    assert target.database.catalog.table("items").number == items_number  # type: ignore[union-attr]
    # Replacing both tables empties them, and then they can be renumbered.
    import_snapshot(target.database, path, mode=ImportMode.REPLACE)
    assert values_equal(_documents(target.database, "items"), _documents(source.database, "items"))


def test_import_publishes_its_write_set(make_backend: MakeBackend, tmp_path: Path) -> None:
    source = _backend(make_backend)
    ids = _fill(source)
    path = tmp_path / "s.zip"
    export_snapshot(source.database, path, include_files=False)
    target = _backend(make_backend)
    commits: list[Commit] = []
    target.database.add_commit_listener(commits.extend)
    import_snapshot(target.database, path)
    assert len(commits) == 1
    writes = commits[0].writes
    assert set(ids["users"]) | set(ids["items"]) <= writes.doc_ids
    assert {"users", "items"} <= writes.tables
    # Every written key of every index, exactly as the engine computes it.
    catalog = target.database.catalog
    for table in ("users", "items"):
        info = catalog.table(table)
        assert info is not None
        docs = _documents(target.database, table)
        for index in info.indexes.values():
            assert sorted(writes.keys[index.full_name]) == sorted(index.key_of(d) for d in docs)


def test_export_of_many_documents_streams_in_batches(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    t = make_backend({"app.py": FUNCTIONS})
    t.run(lambda ctx: [ctx.db.insert("bulk", {"i": float(i)}) for i in range(2500)])
    path = tmp_path / "bulk.zip"
    assert export_snapshot(t.database, path).tables == {"bulk": 2500}
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("bulk/documents.jsonl").splitlines()
    assert [orjson.loads(x)["i"] for x in lines] == [float(i) for i in range(2500)]


# --------------------------------------------------------------------------- single tables


TASKS_SCHEMA = """
from syncline import define_schema, define_table, v

schema = define_schema({
    "tasks": define_table({
        "title": v.string(),
        "done": v.boolean(),
        "priority": v.number(),
        "code": v.optional(v.string()),
        "big": v.optional(v.int64()),
        "raw": v.optional(v.bytes()),
        "tags": v.optional(v.array(v.string())),
        "maybe": v.union(v.null(), v.number()),
    }).index("by_priority", ["priority"]),
})
"""

TASKS_FUNCTIONS = """
from syncline import query, v

@query(args={"priority": v.number()})
def by_priority(ctx, priority):
    return ctx.db.query("tasks").with_index("by_priority", lambda q: q.eq("priority", priority)).collect()
"""

TASKS = [
    {"title": "write", "done": False, "priority": 1.0, "code": "007", "maybe": None},
    {"title": "123", "done": True, "priority": 2.5, "big": Int64(INT64_MAX), "maybe": 3.0},
    {
        "title": 'with, comma "quoted"\nnewline',
        "done": False,
        "priority": float("nan"),
        "raw": b"\x00\xff",
        "tags": ["a", "b"],
        "maybe": None,
    },
    {"title": "", "done": True, "priority": -0.0, "tags": [], "maybe": float("-inf")},
]


def _tasks_backend(make_backend: MakeBackend) -> TestBackend:
    return make_backend({"schema.py": TASKS_SCHEMA, "tasks.py": TASKS_FUNCTIONS})


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_table_round_trip(make_backend: MakeBackend, tmp_path: Path, fmt: str) -> None:
    source = _tasks_backend(make_backend)
    source.run(lambda ctx: [ctx.db.insert("tasks", dict(task)) for task in TASKS])
    path = tmp_path / f"tasks.{fmt}"
    assert export_table(source.database, "tasks", path, fmt=fmt).tables == {"tasks": len(TASKS)}

    target = _tasks_backend(make_backend)
    assert import_table(target.database, "tasks", path).tables == {"tasks": len(TASKS)}
    before, after = _documents(source.database, "tasks"), _documents(target.database, "tasks")
    assert values_equal(before, after)
    assert [d["title"] for d in target.query("tasks:by_priority", {"priority": 2.5})] == ["123"]


def test_csv_export_layout(make_backend: MakeBackend) -> None:
    t = _tasks_backend(make_backend)
    t.run(lambda ctx: [ctx.db.insert("tasks", dict(task)) for task in TASKS])
    out = io.BytesIO()
    export_table(t.database, "tasks", out, fmt="csv")
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    header = rows[0]
    assert header[:2] == ["_id", "_creationTime"]
    assert set(header[2:]) == {"big", "code", "done", "maybe", "priority", "raw", "tags", "title"}
    by_title = {row[header.index("title")]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_title["write"]["code"] == "007" and by_title["write"]["maybe"] == "null"
    assert by_title["write"]["big"] == "" and by_title["write"]["done"] == "false"
    assert by_title["123"]["big"] == str(INT64_MAX)
    assert by_title['with, comma "quoted"\nnewline']["raw"] == "AP8="
    assert by_title['with, comma "quoted"\nnewline']["priority"] == "NaN"
    assert by_title['with, comma "quoted"\nnewline']["tags"] == '["a","b"]'
    assert by_title[""]["maybe"] == "-Infinity"


def test_csv_without_schema_reads_numbers_and_strings(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("name, age ,city\nAda,36,London\nLinus,,1e3\n")
    t = make_backend({"app.py": FUNCTIONS})
    assert import_table(t.database, "people", path).tables == {"people": 2}
    people = sorted(_documents(t.database, "people"), key=lambda d: d["name"])
    assert people[0] == {**people[0], "name": "Ada", "age": 36.0, "city": "London"}
    assert "age" not in people[1] and people[1]["city"] == 1000.0


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    t = _tasks_backend(make_backend)
    other_table_id = new_id(12345)
    lines = [
        orjson.dumps({"title": "fine", "done": True, "priority": 1, "maybe": None}),
        orjson.dumps({"title": "no priority", "done": True, "maybe": None}),
        b"",
        b"[1, 2]",
        b'{"title": "broken',
        orjson.dumps(
            {"_id": other_table_id, "title": "x", "done": True, "priority": 1, "maybe": None}
        ),
        orjson.dumps({"title": "fine too", "done": False, "priority": 2, "maybe": 1}),
        orjson.dumps({"title": 5, "done": True, "priority": 1, "maybe": None}),
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataImportError) as caught:
        import_table(t.database, "tasks", path)
    error = caught.value
    assert [(r.file, r.line) for r in error.rows] == [
        ("tasks.jsonl", 2),
        ("tasks.jsonl", 4),
        ("tasks.jsonl", 5),
        ("tasks.jsonl", 6),
        ("tasks.jsonl", 8),
    ]
    assert "priority" in error.rows[0].message
    assert "JSON object" in error.rows[1].message
    assert "Invalid JSON" in error.rows[2].message
    assert "table number 12345" in error.rows[3].message
    assert "title" in error.rows[4].message
    message = str(error)
    assert message.startswith("5 bad row(s); nothing was imported")
    assert "tasks.jsonl:6:" in message
    assert _documents(t.database, "tasks") == []


def test_csv_bad_rows_are_reported_by_line(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = _tasks_backend(make_backend)
    path = tmp_path / "tasks.csv"
    path.write_text(
        "title,done,priority,maybe\n"
        "ok,true,1,null\n"
        '"multi\nline",true,2,null\n'
        "bad,maybe,3,null\n"
        "short,true\n"
    )
    with pytest.raises(DataImportError) as caught:
        import_table(t.database, "tasks", path)
    assert [(r.line, "done" in r.message or "cell" in r.message) for r in caught.value.rows] == [
        (5, True),
        (6, True),
    ]
    assert _documents(t.database, "tasks") == []


def test_replace_and_append(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = _tasks_backend(make_backend)
    t.run(lambda ctx: [ctx.db.insert("tasks", dict(task)) for task in TASKS[:2]])
    path = tmp_path / "new.jsonl"
    path.write_bytes(
        orjson.dumps({"title": "new", "done": False, "priority": 9, "maybe": None}) + b"\n"
    )

    with pytest.raises(DataImportError, match=r"`tasks` \(2 documents\)") as caught:
        import_table(t.database, "tasks", path)
    assert caught.value.code == "TableNotEmpty"
    assert len(_documents(t.database, "tasks")) == 2

    assert import_table(t.database, "tasks", path, mode=ImportMode.APPEND).tables == {"tasks": 1}
    assert sorted(d["title"] for d in _documents(t.database, "tasks")) == ["123", "new", "write"]

    result = import_table(t.database, "tasks", path, mode=ImportMode.REPLACE)
    assert result.deleted == {"tasks": 3} and result.tables == {"tasks": 1}
    assert [d["title"] for d in _documents(t.database, "tasks")] == ["new"]
    assert [d["title"] for d in t.query("tasks:by_priority", {"priority": 9.0})] == ["new"]
    assert t.query("tasks:by_priority", {"priority": 1.0}) == []

    # A failed replace changes nothing: the old documents are still there.
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"title": 1}\n')
    with pytest.raises(DataImportError):
        import_table(t.database, "tasks", bad, mode=ImportMode.REPLACE)
    assert [d["title"] for d in _documents(t.database, "tasks")] == ["new"]

    # Appending documents whose ids already exist is refused, row by row.
    exported = tmp_path / "tasks.jsonl"
    export_table(t.database, "tasks", exported)
    with pytest.raises(DataImportError, match="already exists"):
        import_table(t.database, "tasks", exported, mode=ImportMode.APPEND)


def test_import_into_a_new_table_keeps_given_ids(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = make_backend({"app.py": FUNCTIONS})
    doc_id = new_id(10077)
    path = tmp_path / "notes.jsonl"
    path.write_bytes(to_json_bytes({"_id": doc_id, "_creationTime": 1234.5, "x": Int64(1)}) + b"\n")
    import_table(t.database, "notes", path)
    (note,) = _documents(t.database, "notes")
    assert note == {"_id": doc_id, "_creationTime": 1234.5, "x": Int64(1)}
    assert t.database.catalog.table("notes").number == 10077  # type: ignore[union-attr]


def test_creation_time_and_id_checks(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = make_backend({"app.py": FUNCTIONS})
    path = tmp_path / "notes.jsonl"
    path.write_bytes(
        b'{"_creationTime": -1}\n{"_creationTime": "soon"}\n{"_id": "nope"}\n{"_other": 1}\n'
    )
    with pytest.raises(DataImportError) as caught:
        import_table(t.database, "notes", path)
    messages = [r.message for r in caught.value.rows]
    assert "positive" in messages[0]
    assert "number of milliseconds" in messages[1]
    assert "not a valid document id" in messages[2]
    assert "_other" in messages[3]


# --------------------------------------------------------------------------- CLI


def _project(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    write_functions(root / "functions", files)
    return root


def test_cli_export_and_import(tmp_path: Path) -> None:
    runner = CliRunner()
    source = _project(tmp_path, "source", {"schema.py": TASKS_SCHEMA, "tasks.py": TASKS_FUNCTIONS})
    target = _project(tmp_path, "target", {"schema.py": TASKS_SCHEMA, "tasks.py": TASKS_FUNCTIONS})
    data = tmp_path / "tasks.jsonl"
    data.write_bytes(
        b"".join(
            orjson.dumps({"title": f"t{i}", "done": False, "priority": i, "maybe": None}) + b"\n"
            for i in range(5)
        )
    )
    result = runner.invoke(main, ["import", str(data), "--table", "tasks", "--dir", str(source)])
    assert result.exit_code == 0, result.output
    assert "Imported 5 document(s) into tasks" in result.output

    snapshot = tmp_path / "backups"
    snapshot.mkdir()
    result = runner.invoke(main, ["export", "--dir", str(source), "--path", str(snapshot)])
    assert result.exit_code == 0, result.output
    (zip_path,) = snapshot.glob("snapshot_*.zip")

    result = runner.invoke(main, ["import", str(zip_path), "--dir", str(target)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["import", str(zip_path), "--dir", str(target)])
    assert result.exit_code == 1
    assert "--replace" in result.output and "nothing was imported" in result.output
    result = runner.invoke(main, ["import", str(zip_path), "--dir", str(target), "--replace"])
    assert result.exit_code == 0, result.output
    assert "(replacing 5)" in result.output

    result = runner.invoke(
        main, ["export", "--dir", str(target), "--table", "tasks", "--format", "csv", "--path", "-"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("_id,_creationTime,")
    assert len(result.stdout.splitlines()) == 6


def test_cli_export_path_ending_in_a_slash_is_a_new_folder(tmp_path: Path) -> None:
    project = _project(tmp_path, "app", {"schema.py": TASKS_SCHEMA, "tasks.py": TASKS_FUNCTIONS})
    runner = CliRunner()
    data = tmp_path / "tasks.jsonl"
    data.write_bytes(orjson.dumps({"title": "t", "done": False, "priority": 1, "maybe": None}))
    result = runner.invoke(main, ["import", str(data), "--table", "tasks", "--dir", str(project)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "backups" / "daily"
    result = runner.invoke(main, ["export", "--dir", str(project), "--path", f"{folder}/"])
    assert result.exit_code == 0, result.output
    assert folder.is_dir()
    (written,) = folder.iterdir()
    assert re.fullmatch(r"snapshot_\d{8}-\d{6}\.zip", written.name)
    result = runner.invoke(
        main, ["export", "--dir", str(project), "--table", "tasks", "--path", f"{folder}/"]
    )
    assert result.exit_code == 0, result.output
    assert (folder / "tasks.jsonl").is_file()


def test_cli_reports_bad_rows(tmp_path: Path) -> None:
    project = _project(tmp_path, "p", {"schema.py": TASKS_SCHEMA})
    data = tmp_path / "tasks.csv"
    data.write_text("title,done,priority,maybe\nok,true,1,null\nbad,true,high,null\n")
    result = CliRunner().invoke(
        main, ["import", str(data), "--table", "tasks", "--dir", str(project)]
    )
    assert result.exit_code == 1
    assert "1 bad row(s); nothing was imported" in result.output
    assert "tasks.csv:3:" in result.output


def test_cli_says_to_stop_the_server(tmp_path: Path) -> None:
    from syncline.application import Application

    project = _project(tmp_path, "p", {"app.py": FUNCTIONS})
    Application.open(project).close()  # the project has run once: it has a database
    lock = DataDirLock(project / ".syncline")  # what a running server holds
    try:
        for args in (["export"], ["import", __file__, "--format", "jsonl", "--table", "t"]):
            result = CliRunner().invoke(main, [*args, "--dir", str(project)])
            assert result.exit_code == 1
            # A server that recorded no address: the command says how to reach it.
            assert "in use by a running Syncline server" in result.output
            assert "pass it with --url" in result.output
    finally:
        lock.release()


def test_cli_refuses_a_folder_that_is_not_a_project(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_bytes(b"{}\n")
    for args in (["export"], ["import", str(data), "--table", "t"]):
        result = CliRunner().invoke(main, [*args, "--dir", str(tmp_path / "typo")])
        assert result.exit_code == 1
        assert "No Syncline data" in result.output or "No functions folder" in result.output
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{zip}", "--table", "t"], "drop --table"),
        (["import", "{jsonl}"], "pass --table"),
        (["import", "{jsonl}", "--table", "t", "--replace", "--append"], "not both"),
        (["export", "--format", "csv"], "--table"),
        (["export", "--table", "t", "--format", "zip"], "drop --table"),
        (["export", "--path", "-"], "--table only"),
    ],
)
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "x.zip").write_bytes(b"")
    (tmp_path / "x.jsonl").write_bytes(b"")
    args = [a.format(zip=tmp_path / "x.zip", jsonl=tmp_path / "x.jsonl") for a in args]
    result = CliRunner().invoke(main, [*args, "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output


def test_nan_round_trips_bit_for_bit(make_backend: MakeBackend, tmp_path: Path) -> None:
    t = make_backend({"app.py": FUNCTIONS})
    t.run(lambda ctx: ctx.db.insert("floats", {"x": float("nan"), "y": -0.0}))
    path = tmp_path / "f.zip"
    export_snapshot(t.database, path)
    other = make_backend({"app.py": FUNCTIONS})
    import_snapshot(other.database, path)
    (doc,) = _documents(other.database, "floats")
    assert math.isnan(doc["x"]) and math.copysign(1.0, doc["y"]) == -1.0


def test_cli_progress_display_draws_steps() -> None:
    from rich.console import Console

    from syncline.commands.snapshot import _RichProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with _RichProgress(console) as progress:
        progress.start("tasks", 2500, "documents")
        progress.advance(2500)
        progress.start("items", 4_000_000, "bytes")
        progress.advance(1_000_000)
        progress.start("clearing tasks", None, "documents")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # no terminal codes
    assert "2,500/2,500 documents" in text
    assert "4.0 MB/4.0 MB" in text  # a step shows as complete once the next one starts
    assert "0/0 documents" in text  # a step of unknown size, completed empty


def test_cli_round_trip_with_stored_files(tmp_path: Path, files_location: str) -> None:
    import asyncio

    from syncline.application import Application

    source = _project(tmp_path, "source", {"schema.py": _schema(), "app.py": FUNCTIONS})
    target = _project(tmp_path, "target", {"schema.py": _schema(), "app.py": FUNCTIONS})
    files = {p: sub_location(files_location, p.name) for p in (source, target)}
    with Application.open(source, files=files[source]) as app:
        assert app.storage is not None
        file_id = asyncio.run(app.storage.store(b"%PDF-1.4 hello", content_type="application/pdf"))
        app.database.write_sync(lambda tx: tx.insert("users", {"name": "ada", "avatar": file_id}))
    path = tmp_path / "with-files.zip"
    runner = CliRunner()
    result = runner.invoke(
        main, ["export", "--dir", str(source), "--files", files[source], "--path", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert "and 1 file(s)" in result.output
    with zipfile.ZipFile(path) as archive:
        assert archive.read(f"_storage/{file_id}.pdf") == b"%PDF-1.4 hello"

    result = runner.invoke(
        main, ["import", str(path), "--dir", str(target), "--files", files[target]]
    )
    assert result.exit_code == 0, result.output
    assert "Restored 1 stored file(s)" in result.output
    with Application.open(target, files=files[target]) as app:
        assert app.storage is not None

        async def read() -> tuple[bytes, str | None]:
            reader = await app.storage.open(file_id)  # type: ignore[union-attr]
            assert reader is not None
            return await reader.read(), reader.content_type

        assert asyncio.run(read()) == (b"%PDF-1.4 hello", "application/pdf")
        (user,) = _documents(app.database, "users")
        assert user["avatar"] == file_id


def test_damaged_file_fails_the_import_and_leaves_no_blobs(
    make_backend: MakeBackend, tmp_path: Path, files_location: str
) -> None:
    source = _backend(make_backend, files=sub_location(files_location, "source"))
    ids = _fill(source)
    assert source.app.storage is not None
    good = tmp_path / "good.zip"
    export_snapshot(source.database, good, blobs=source.app.storage.blobs)
    bad = tmp_path / "bad.zip"
    damaged = ids["files"][1]
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == f"_storage/{damaged}.png":
                data = b"something else"
            dst.writestr(name, data)

    target = _backend(make_backend, files=sub_location(files_location, "target"))
    assert target.app.storage is not None
    blobs = target.app.storage.blobs
    with pytest.raises(DataImportError) as caught:
        import_snapshot(target.database, bad, blobs=blobs)
    (row,) = caught.value.rows
    assert row.file == "_storage/documents.jsonl" and row.line == 2
    assert "the snapshot is damaged" in row.message
    assert not _documents(target.database, "_storage")
    assert not _documents(target.database, "users")

    assert blob_keys(blobs) == []
