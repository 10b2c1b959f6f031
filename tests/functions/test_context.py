"""The ``ctx`` of queries and mutations: ctx.db rules, system tables, now, random, auth."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from conftest import MakeBackend
from syncline import ConvexError, Int64
from syncline.database.catalog import SYSTEM_TABLES
from syncline.errors import InvalidId, InvalidValue, NonexistentDocument, SystemTableError
from syncline.functions.context import DatabaseReader, DatabaseWriter, MutationCtx, QueryCtx
from syncline.identity import ANONYMOUS
from syncline.testing import TestBackend
from syncline.values.ids import new_id

OPS = """
import random

from syncline import UNDEFINED, mutation, query, v


@mutation(args={"table": v.string(), "doc": v.any()})
def insert(ctx, table, doc):
    return ctx.db.insert(table, doc)


@mutation(args={"n": v.number()})
def insert_many(ctx, n):
    ids = [ctx.db.insert("t", {"i": i}) for i in range(int(n))]
    return [ctx.db.get(i)["_creationTime"] for i in ids]


@mutation
def insert_huge_int(ctx):
    return ctx.db.insert("t", {"n": 2**60})


@mutation
def insert_special(ctx):
    return ctx.db.insert("t", {"i": 1, "gone": UNDEFINED, "big": v_int64(), "neg0": -0.0})


def v_int64():
    from syncline import Int64
    return Int64(2**60)


@query(args={"id": v.any()})
def get(ctx, id):
    return ctx.db.get(id)


@query(args={"table": v.string(), "id": v.any()})
def get_in(ctx, table, id):
    return ctx.db.get(table, id)


@mutation(args={"id": v.any(), "fields": v.any(), "remove": v.optional(v.array(v.string())), "table": v.optional(v.string())})
def patch(ctx, id, fields, remove=(), table=None):
    fields = dict(fields)
    for key in remove:
        fields[key] = UNDEFINED
    if table is None:
        ctx.db.patch(id, fields)
    else:
        ctx.db.patch(table, id, fields)
    return ctx.db.get(id)


@mutation(args={"id": v.any(), "doc": v.any(), "table": v.optional(v.string())})
def replace(ctx, id, doc, table=None):
    if table is None:
        ctx.db.replace(id, doc)
    else:
        ctx.db.replace(table, id, doc)
    return ctx.db.get(id)


@mutation(args={"id": v.any(), "table": v.optional(v.string())})
def delete(ctx, id, table=None):
    if table is None:
        ctx.db.delete(id)
    else:
        ctx.db.delete(table, id)
    return ctx.db.get(id)


@mutation(args={"id": v.string()})
def patch_twice_and_read(ctx, id):
    ctx.db.patch(id, {"step": 1})
    first = ctx.db.get(id)["step"]
    ctx.db.patch(id, {"step": 2})
    return [first, ctx.db.get(id)["step"], len(ctx.db.query("t").collect())]


@query(args={"table": v.string(), "id": v.any()})
def normalize(ctx, table, id):
    return ctx.db.normalize_id(table, id)


@query(args={"table": v.string()})
def scan(ctx, table):
    return ctx.db.query(table).collect()


@query(args={"table": v.string()})
def system_scan(ctx, table):
    return ctx.db.system.query(table).collect()


@query(args={"id": v.any()})
def system_get(ctx, id):
    return ctx.db.system.get(id)


@query(args={"table": v.string(), "id": v.any()})
def system_get_in(ctx, table, id):
    return ctx.db.system.get(table, id)


@query(args={"table": v.string(), "id": v.any()})
def system_normalize(ctx, table, id):
    return ctx.db.system.normalize_id(table, id)


@query
def reader_methods(ctx):
    return sorted(m for m in ("insert", "patch", "replace", "delete") if hasattr(ctx.db, m))


@mutation
def writer_methods(ctx):
    return sorted(m for m in ("insert", "patch", "replace", "delete") if hasattr(ctx.db, m))


@query
def now(ctx):
    return ctx.now


@mutation
def now_in_mutation(ctx):
    doc_id = ctx.db.insert("t", {"at": ctx.now})
    return [ctx.now, ctx.db.get(doc_id)["at"]]


@query
def randoms(ctx):
    return [isinstance(ctx.random, random.Random), ctx.random.random(), ctx.random.random()]


@query
def who(ctx):
    identity = ctx.auth.get_user_identity()
    return None if identity is None else identity.token_identifier


@query
def env(ctx):
    return dict(ctx.env)
"""


@pytest.fixture
def t(make_backend: MakeBackend) -> TestBackend:
    return make_backend({"ops.py": OPS})


def seed_system(t: TestBackend) -> tuple[str, str]:
    storage = t.database.write_sync(
        lambda tx: tx.insert("_storage", {"sha256": "abc=", "size": 3.0})
    ).value
    job = t.database.write_sync(
        lambda tx: tx.insert(
            "_scheduled_functions",
            {"name": "tasks:run", "args": [{}], "scheduledTime": 1.0, "state": {"kind": "pending"}},
        )
    ).value
    return storage, job


# ---------------------------------------------------------------------- insert


def test_insert_through_a_mutation(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "users", "doc": {"name": "ada", "age": 36}})
    doc = t.query("ops:get", {"id": doc_id})
    assert doc["_id"] == doc_id
    assert doc["_creationTime"] == pytest.approx(t.clock.now_ms(), abs=1.0)
    assert doc["name"] == "ada"
    assert doc["age"] == 36.0 and type(doc["age"]) is float
    assert t.database.catalog.table("users") is not None


def test_creation_times_strictly_increase(t: TestBackend) -> None:
    first = t.mutation("ops:insert_many", {"n": 10})
    second = t.mutation("ops:insert_many", {"n": 10})
    times = first + second
    assert all(a < b for a, b in itertools.pairwise(times))


def test_insert_value_rules(t: TestBackend) -> None:
    doc = t.query("ops:get", {"id": t.mutation("ops:insert_special")})
    assert "gone" not in doc
    assert doc["i"] == 1.0 and type(doc["i"]) is float
    assert doc["big"] == 2**60 and type(doc["big"]) is Int64
    assert math.copysign(1.0, doc["neg0"]) == -1.0
    with pytest.raises(InvalidValue, match="Int64"):
        t.mutation("ops:insert_huge_int")
    with pytest.raises(InvalidValue) as info:
        t.mutation("ops:insert", {"table": "t", "doc": {"_id": "x"}})
    assert info.value.code == "InvalidIdError"
    with pytest.raises(InvalidValue, match="_foo"):
        t.mutation("ops:insert", {"table": "t", "doc": {"_foo": 1}})
    assert len(t.query("ops:scan", {"table": "t"})) == 1


def test_query_ctx_has_no_writer(t: TestBackend) -> None:
    assert t.query("ops:reader_methods") == []
    assert t.mutation("ops:writer_methods") == ["delete", "insert", "patch", "replace"]


# ---------------------------------------------------------------------- get


def test_get_by_id_and_by_table_and_id(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "users", "doc": {"name": "ada"}})
    assert t.query("ops:get", {"id": doc_id})["name"] == "ada"
    assert t.query("ops:get_in", {"table": "users", "id": doc_id})["name"] == "ada"
    ghost = new_id(t.database.catalog.table("users").number)
    assert t.query("ops:get", {"id": ghost}) is None
    assert t.query("ops:get_in", {"table": "users", "id": ghost}) is None


def test_get_with_an_id_of_another_table(t: TestBackend) -> None:
    user = t.mutation("ops:insert", {"table": "users", "doc": {}})
    t.mutation("ops:insert", {"table": "tasks", "doc": {}})
    with pytest.raises(InvalidId) as info:
        t.query("ops:get_in", {"table": "tasks", "id": user})
    assert info.value.message == 'InvalidTable: expected to be an Id<"tasks">, got Id<"users">'


@pytest.mark.parametrize("bad", ["not-an-id", "", 12.0, None, ["x"]])
def test_get_with_a_malformed_id(t: TestBackend, bad: Any) -> None:
    with pytest.raises(InvalidId):
        t.query("ops:get", {"id": bad})
    with pytest.raises(InvalidId):
        t.query("ops:get_in", {"table": "users", "id": bad})


def test_get_with_a_system_table_id(t: TestBackend) -> None:
    storage, job = seed_system(t)
    for doc_id in (storage, job):
        with pytest.raises(SystemTableError, match=r"db\.system"):
            t.query("ops:get", {"id": doc_id})
    with pytest.raises(SystemTableError):
        t.query("ops:get_in", {"table": "_storage", "id": storage})


# ---------------------------------------------------------------------- patch, replace, delete


def test_patch_through_a_mutation(t: TestBackend) -> None:
    doc_id = t.mutation(
        "ops:insert", {"table": "t", "doc": {"a": 1, "b": 2, "nested": {"x": 1, "y": 2}}}
    )
    doc = t.mutation(
        "ops:patch", {"id": doc_id, "fields": {"a": 10, "nested": {"z": 3}}, "remove": ["b"]}
    )
    assert {k: v for k, v in doc.items() if not k.startswith("_")} == {
        "a": 10.0,
        "nested": {"z": 3.0},
    }
    same = t.mutation("ops:patch", {"id": doc_id, "fields": {}})
    assert same == doc
    with_table = t.mutation("ops:patch", {"table": "t", "id": doc_id, "fields": {"c": True}})
    assert with_table["c"] is True


def test_patch_with_system_fields(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {"a": 1}})
    other = t.mutation("ops:insert", {"table": "t", "doc": {"a": 2}})
    assert t.mutation("ops:patch", {"id": doc_id, "fields": {"_id": doc_id, "a": 5}})["a"] == 5.0
    with pytest.raises(InvalidValue):
        t.mutation("ops:patch", {"id": doc_id, "fields": {"_id": other, "a": 6}})
    assert t.query("ops:get", {"id": doc_id})["a"] == 5.0


def test_patch_nonexistent(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {}})
    t.mutation("ops:delete", {"id": doc_id})
    with pytest.raises(NonexistentDocument) as info:
        t.mutation("ops:patch", {"id": doc_id, "fields": {"a": 1}})
    assert info.value.message == f"Update on nonexistent document ID {doc_id}"
    with pytest.raises(NonexistentDocument, match="Replace on nonexistent document ID"):
        t.mutation("ops:replace", {"id": doc_id, "doc": {}})
    with pytest.raises(NonexistentDocument, match="Delete on nonexistent document ID"):
        t.mutation("ops:delete", {"id": doc_id})


def test_patch_with_the_wrong_table(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {"a": 1}})
    t.mutation("ops:insert", {"table": "other", "doc": {}})
    for name, args in (
        ("ops:patch", {"table": "other", "id": doc_id, "fields": {"a": 2}}),
        ("ops:replace", {"table": "other", "id": doc_id, "doc": {"a": 2}}),
        ("ops:delete", {"table": "other", "id": doc_id}),
    ):
        with pytest.raises(InvalidId, match="InvalidTable"):
            t.mutation(name, args)
    assert t.query("ops:get", {"id": doc_id})["a"] == 1.0


def test_replace_through_a_mutation(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {"a": 1, "b": 2}})
    before = t.query("ops:get", {"id": doc_id})
    doc = t.mutation("ops:replace", {"id": doc_id, "doc": {"c": 3}})
    assert doc == {"_id": doc_id, "_creationTime": before["_creationTime"], "c": 3.0}
    doc = t.mutation("ops:replace", {"table": "t", "id": doc_id, "doc": {"d": 4}})
    assert doc["d"] == 4.0 and "c" not in doc


def test_delete_then_get_in_the_same_mutation(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {}})
    assert t.mutation("ops:delete", {"id": doc_id}) is None
    assert t.query("ops:get", {"id": doc_id}) is None
    other = t.mutation("ops:insert", {"table": "t", "doc": {}})
    assert t.mutation("ops:delete", {"table": "t", "id": other}) is None


def test_reads_see_earlier_writes_of_the_same_mutation(t: TestBackend) -> None:
    doc_id = t.mutation("ops:insert", {"table": "t", "doc": {}})
    assert t.mutation("ops:patch_twice_and_read", {"id": doc_id}) == [1.0, 2.0, 1]


# ---------------------------------------------------------------------- normalize_id


def test_normalize_id(t: TestBackend) -> None:
    user = t.mutation("ops:insert", {"table": "users", "doc": {}})
    t.mutation("ops:insert", {"table": "tasks", "doc": {}})
    assert t.query("ops:normalize", {"table": "users", "id": user}) == user
    assert t.query("ops:normalize", {"table": "tasks", "id": user}) is None
    assert t.query("ops:normalize", {"table": "users", "id": "garbage"}) is None
    assert t.query("ops:normalize", {"table": "users", "id": 5}) is None
    assert t.query("ops:normalize", {"table": "nothing", "id": user}) is None
    # Existence is not checked.
    ghost = new_id(t.database.catalog.table("users").number)
    assert t.query("ops:normalize", {"table": "users", "id": ghost}) == ghost
    with pytest.raises(SystemTableError):
        t.query("ops:normalize", {"table": "_storage", "id": user})


# ---------------------------------------------------------------------- system tables


def test_db_system_reads_visible_system_tables(t: TestBackend) -> None:
    storage, job = seed_system(t)
    assert [d["_id"] for d in t.query("ops:system_scan", {"table": "_storage"})] == [storage]
    jobs = t.query("ops:system_scan", {"table": "_scheduled_functions"})
    assert [d["_id"] for d in jobs] == [job]
    assert jobs[0]["state"] == {"kind": "pending"}
    assert t.query("ops:system_get", {"id": storage})["sha256"] == "abc="
    assert (
        t.query("ops:system_get_in", {"table": "_scheduled_functions", "id": job})["name"]
        == "tasks:run"
    )
    assert t.query("ops:system_normalize", {"table": "_storage", "id": storage}) == storage
    assert t.query("ops:system_normalize", {"table": "_storage", "id": job}) is None


def test_db_system_rejects_user_and_private_tables(t: TestBackend) -> None:
    _storage, job = seed_system(t)
    user = t.mutation("ops:insert", {"table": "users", "doc": {}})
    with pytest.raises(SystemTableError):
        t.query("ops:system_get", {"id": user})
    with pytest.raises(InvalidId, match="InvalidTable"):
        t.query("ops:system_get_in", {"table": "_storage", "id": job})
    private = [spec.name for spec in SYSTEM_TABLES if not spec.user_visible]
    assert private
    for table in ("users", "_nope", *private):
        with pytest.raises(SystemTableError):
            t.query("ops:system_scan", {"table": table})
    with pytest.raises(SystemTableError):
        t.query("ops:system_get_in", {"table": "users", "id": user})
    with pytest.raises(InvalidId):
        t.query("ops:system_get", {"id": "garbage"})


def test_db_query_rejects_system_tables(t: TestBackend) -> None:
    seed_system(t)
    for table in [spec.name for spec in SYSTEM_TABLES]:
        with pytest.raises(SystemTableError, match=r"db\.system"):
            t.query("ops:scan", {"table": table})


def test_writes_to_system_tables_are_rejected(t: TestBackend) -> None:
    storage, job = seed_system(t)
    with pytest.raises(SystemTableError):
        t.mutation("ops:insert", {"table": "_storage", "doc": {"sha256": "x"}})
    with pytest.raises(SystemTableError):
        t.mutation("ops:insert", {"table": "_scheduled_functions", "doc": {}})
    with pytest.raises(SystemTableError):
        t.mutation("ops:patch", {"id": storage, "fields": {"size": 0}})
    with pytest.raises(SystemTableError):
        t.mutation("ops:replace", {"id": job, "doc": {}})
    with pytest.raises(SystemTableError):
        t.mutation("ops:delete", {"id": storage})
    with pytest.raises(SystemTableError):
        t.mutation("ops:delete", {"table": "_storage", "id": storage})
    assert t.query("ops:system_get", {"id": storage})["size"] == 3.0
    assert len(t.query("ops:system_scan", {"table": "_storage"})) == 1
    assert len(t.query("ops:system_scan", {"table": "_scheduled_functions"})) == 1
    assert not hasattr(DatabaseReader, "insert")
    assert issubclass(DatabaseWriter, DatabaseReader)


# ---------------------------------------------------------------------- now, random, auth, env


def test_ctx_now_is_the_frozen_clock(t: TestBackend) -> None:
    assert t.query("ops:now") == t.clock.now_ms()
    t.clock.advance(1234.5)
    assert t.query("ops:now") == t.clock.now_ms()
    now, stored = t.mutation("ops:now_in_mutation")
    assert now == stored == t.clock.now_ms()


def test_ctx_random_is_a_seeded_generator(t: TestBackend) -> None:
    is_random, a, b = t.query("ops:randoms")
    assert is_random is True
    assert a != b
    _, c, d = t.query("ops:randoms")
    assert (c, d) != (a, b)  # a fresh seed per execution


def test_ctx_types(t: TestBackend) -> None:
    def kinds(ctx: Any) -> tuple[bool, bool]:
        return isinstance(ctx, MutationCtx), isinstance(ctx, QueryCtx)

    assert t.run(kinds) == (True, True)


def test_ctx_auth(t: TestBackend) -> None:
    assert t.query("ops:who") is None
    signed_in = t.with_identity({"subject": "u1", "issuer": "https://issuer.example.com"})
    assert signed_in.query("ops:who") == "https://issuer.example.com|u1"
    outcome = t.app.executor.query_sync("ops:who", {})
    assert outcome.read_set is not None and outcome.read_set.reads_auth is True
    outcome = t.app.executor.query_sync("ops:now", {})
    assert outcome.read_set is not None and outcome.read_set.reads_auth is False


def test_ctx_env_is_empty_by_default(t: TestBackend) -> None:
    assert t.query("ops:env") == {}


def test_errors_raised_by_handlers_abort_their_writes(t: TestBackend) -> None:
    def failing(ctx: Any) -> None:
        ctx.db.insert("t", {"n": 1})
        raise ConvexError("stop")

    with pytest.raises(ConvexError):
        t.run(failing)
    assert t.query("ops:scan", {"table": "t"}) == []


# ---------------------------------------------------------------------- members built on first use


def test_ctx_members_are_built_on_first_access_once_per_ctx(t: TestBackend) -> None:
    built: list[str] = []

    def factory(kind: str, tx: Any, identity: Any) -> Any:
        built.append(kind)
        return object() if kind == "mutation" else None

    members = {"probe": factory}

    def body(tx: Any) -> Any:
        query_ctx = QueryCtx(tx, ANONYMOUS, now=0.0, members=members)
        mutation_ctx = MutationCtx(tx, ANONYMOUS, now=0.0, members=members)
        assert built == []  # nothing built with the ctx
        assert not hasattr(query_ctx, "probe")  # the factory left it out for queries
        with pytest.raises(AttributeError, match="probe"):
            _ = query_ctx.probe
        first = mutation_ctx.probe
        assert mutation_ctx.probe is first  # kept for the next access
        assert "probe" in dir(mutation_ctx) and "auth" in dir(query_ctx)
        with pytest.raises(AttributeError):
            _ = query_ctx.not_a_member
        return built

    assert t.database.write_sync(body).value == ["query", "query", "mutation"]


def test_ctx_auth_and_env_are_built_on_first_access(t: TestBackend) -> None:
    calls: list[int] = []

    def env() -> dict[str, str]:
        calls.append(1)
        return {"A": "1"}

    def body(tx: Any) -> Any:
        ctx = MutationCtx(tx, ANONYMOUS, now=0.0, env=env)
        assert isinstance(ctx.db, DatabaseWriter)
        assert calls == []
        assert dict(ctx.env) == {"A": "1"} and ctx.env["A"] == "1"
        assert calls == [1]
        assert ctx.auth.get_user_identity() is None
        return QueryCtx(tx, ANONYMOUS, now=0.0).env

    assert dict(t.database.write_sync(body).value) == {}


def test_ctx_random_draws_a_fresh_seed_per_ctx_unless_one_is_given(t: TestBackend) -> None:
    def body(tx: Any) -> Any:
        fresh = [QueryCtx(tx, ANONYMOUS, now=0.0).random.random() for _ in range(3)]
        seeded = [QueryCtx(tx, ANONYMOUS, now=0.0, seed=5).random.random() for _ in range(2)]
        return fresh, seeded

    fresh, seeded = t.database.run_read(body).value
    assert len(set(fresh)) == 3
    assert seeded[0] == seeded[1] == random.Random(5).random()
