"""Running functions: resolution, argument and return validation, errors, outcomes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import MakeBackend
from syncline import ConvexError, Int64, api, internal, mutation, v
from syncline.errors import (
    ArgumentValidationError,
    FunctionNotFound,
    InvalidRequest,
    InvalidValue,
    ReturnsValidationError,
)
from syncline.functions.executor import bind_args, bind_validated_args
from syncline.functions.outcomes import Outcome, format_error
from syncline.functions.registration import FunctionKind
from syncline.identity import Admin
from syncline.testing import TestBackend

TASKS = """
from syncline import ConvexError, Int64, internal_mutation, internal_query, mutation, query, v


@query
def default(ctx):
    return "the default export"


@query(args={"title": v.string(), "n": v.optional(v.number())})
def echo(ctx, title, n=None):
    return {"title": title, "n": n}


@query(args={"count": v.int64()})
def int64_arg(ctx, count):
    return [type(count).__name__, count]


@query
def anything(ctx, **kwargs):
    return {k: [type(v).__name__, v] for k, v in kwargs.items()}


@query
def only_ctx(ctx):
    return "ok"


@mutation(args={"title": v.string()})
def add(ctx, title):
    return ctx.db.insert("tasks", {"title": title})


@query
def list(ctx):
    return [t["title"] for t in ctx.db.query("tasks").collect()]


@internal_query
def secret(ctx):
    return "internal"


@internal_mutation
def secret_write(ctx):
    return ctx.db.insert("tasks", {"title": "internal"})


@query(returns=v.string())
def returns_ok(ctx):
    return "fine"


@query(returns=v.string())
def returns_wrong(ctx):
    return 42


@query(returns=v.object({"n": v.number()}))
def returns_extra(ctx):
    return {"n": 1, "extra": True}


@query(returns=v.int64())
def returns_int64(ctx):
    return 5


@query
def returns_int(ctx):
    return {"n": 1, "nested": [2]}


@query
def returns_nothing(ctx):
    pass


@query
def returns_tuple(ctx):
    return (1, 2)


@query
def returns_huge_int(ctx):
    return 2**60


@mutation(args={"title": v.string()})
def add_then_fail(ctx, title):
    ctx.db.insert("tasks", {"title": title})
    raise ConvexError({"code": "NOPE", "title": title, "n": Int64(3)})


@mutation
def add_then_crash(ctx):
    ctx.db.insert("tasks", {"title": "crash"})
    return 1 / 0


@query
def convex_string_error(ctx):
    raise ConvexError("just a message")
"""

USERS = """
from syncline import query, v

@query(args={"name": v.string()})
def get(ctx, name):
    return "user " + name
"""


@pytest.fixture
def t(make_backend: MakeBackend) -> TestBackend:
    return make_backend({"tasks.py": TASKS, "admin/users.py": USERS})


def client_query(t: TestBackend, path: str, args: Any = None) -> Outcome:
    """Call as a client would: internal functions are off limits."""
    return t.app.executor.query_sync(path, {} if args is None else args)


def client_mutation(t: TestBackend, path: str, args: Any = None) -> Outcome:
    return t.app.executor.mutation_sync(path, {} if args is None else args)


# ---------------------------------------------------------------------- resolution


def test_internal_functions_look_missing_to_clients(t: TestBackend) -> None:
    internal_outcome = client_query(t, "tasks:secret")
    missing = client_query(t, "tasks:qqqqqq")
    assert isinstance(internal_outcome.error, FunctionNotFound)
    assert str(internal_outcome.error) == "Could not find public function for 'tasks:secret'"
    assert str(missing.error) == "Could not find public function for 'tasks:qqqqqq'"
    assert type(internal_outcome.error) is type(missing.error)
    assert internal_outcome.error.code == missing.error.code
    mutation_outcome = client_mutation(t, "tasks:secret_write")
    assert str(mutation_outcome.error) == "Could not find public function for 'tasks:secret_write'"
    assert t.query("tasks:list") == []


def test_internal_functions_for_admins_and_the_test_kit(t: TestBackend) -> None:
    assert t.query("tasks:secret") == "internal"
    assert t.query(internal.tasks.secret) == "internal"
    admin = t.app.executor.query_sync("tasks:secret", {}, identity=Admin())
    assert admin.value == "internal"
    assert t.app.executor.query_sync("tasks:secret", {}, allow_internal=True).value == "internal"


def test_wrong_kind(t: TestBackend) -> None:
    outcome = client_query(t, "tasks:add", {"title": "x"})
    assert (
        str(outcome.error) == "Trying to execute tasks:add as Query, but it is defined as Mutation."
    )
    outcome = client_mutation(t, "tasks:list")
    assert (
        str(outcome.error)
        == "Trying to execute tasks:list as Mutation, but it is defined as Query."
    )
    assert t.query("tasks:list") == []


def test_paths_are_canonicalized(t: TestBackend) -> None:
    outcome = client_query(t, "tasks.js:echo", {"title": "x"})
    assert outcome.value == {"title": "x", "n": None}
    assert outcome.path == "tasks:echo"
    assert client_query(t, "tasks").value == "the default export"
    assert client_query(t, "tasks.js").value == "the default export"
    assert client_query(t, "admin/users:get", {"name": "ada"}).value == "user ada"
    assert client_query(t, "admin/users.js:get", {"name": "ada"}).value == "user ada"
    assert t.query(api.admin.users.get, {"name": "bob"}) == "user bob"
    bad = client_query(t, "tasks:")
    assert isinstance(bad.error, InvalidRequest)
    assert bad.error.code == "InvalidFunctionPath"


def test_function_objects_are_references(t: TestBackend) -> None:
    fn = t.app.registry.functions["tasks:echo"]
    assert t.query(fn, {"title": "via object"})["title"] == "via object"


# ---------------------------------------------------------------------- arguments


def test_args_are_validated(t: TestBackend) -> None:
    for args, fragment in (
        ({"title": "x", "extra": 1}, "extra field `extra`"),
        ({"title": 5}, "Value does not match validator."),
        ({}, "missing the required field `title`"),
        ({"title": "x", "n": "not a number"}, "Path: .n"),
        ({"title": "x", "n": None}, "Path: .n"),
    ):
        outcome = client_query(t, "tasks:echo", args)
        assert isinstance(outcome.error, ArgumentValidationError), args
        assert outcome.error.message.startswith("ArgumentValidationError: ")
        assert fragment in outcome.error.message


def test_wire_style_args(t: TestBackend) -> None:
    assert client_query(t, "tasks:echo", [{"title": "wire"}]).value == {"title": "wire", "n": None}
    assert client_query(t, "tasks:only_ctx", [{}]).value == "ok"
    for bad in ([1, 2], [], [{}, {}], ["x"]):
        outcome = client_query(t, "tasks:only_ctx", bad)
        assert isinstance(outcome.error, ArgumentValidationError)
        assert "Expected to receive a single object" in outcome.error.message


@pytest.mark.parametrize("bad", ["x", 5, True])
def test_args_must_be_an_object(t: TestBackend, bad: Any) -> None:
    outcome = client_query(t, "tasks:only_ctx", bad)
    assert isinstance(outcome.error, ArgumentValidationError)


def test_no_args_validator_passes_values_through(t: TestBackend) -> None:
    value = client_query(
        t, "tasks:anything", {"i": 1, "f": 1.5, "big": Int64(7), "s": "x", "l": [1]}
    ).value
    assert value == {
        "i": ["float", 1.0],
        "f": ["float", 1.5],
        "big": ["Int64", 7],
        "s": ["str", "x"],
        "l": ["list", [1.0]],
    }
    outcome = client_query(t, "tasks:anything", {"bad": (1, 2)})
    assert isinstance(outcome.error, ArgumentValidationError)
    outcome = client_query(t, "tasks:anything", {"huge": 2**60})
    assert isinstance(outcome.error, ArgumentValidationError)


def test_handler_that_takes_no_args(t: TestBackend) -> None:
    assert client_query(t, "tasks:only_ctx", None).value == "ok"
    outcome = client_query(t, "tasks:only_ctx", {"surprise": 1})
    assert isinstance(outcome.error, ArgumentValidationError)
    assert "surprise" in outcome.error.message


def test_int64_validator_keeps_int64(t: TestBackend) -> None:
    assert client_query(t, "tasks:int64_arg", {"count": Int64(3)}).value == ["Int64", 3]
    outcome = client_query(t, "tasks:int64_arg", {"count": 3.0})
    assert isinstance(outcome.error, ArgumentValidationError)


def test_argument_errors_change_nothing(t: TestBackend) -> None:
    outcome = client_mutation(t, "tasks:add", {"title": 1})
    assert isinstance(outcome.error, ArgumentValidationError)
    assert t.query("tasks:list") == []


# ---------------------------------------------------------------------- results


def test_returns_validator(t: TestBackend) -> None:
    assert client_query(t, "tasks:returns_ok").value == "fine"
    wrong = client_query(t, "tasks:returns_wrong")
    assert isinstance(wrong.error, ReturnsValidationError)
    assert wrong.error.message.startswith("ReturnsValidationError: ")
    assert "v.string()" in wrong.error.message
    extra = client_query(t, "tasks:returns_extra")
    assert isinstance(extra.error, ReturnsValidationError)
    assert "extra" in extra.error.message
    # A Python int becomes an Int64 where the validator says so (else a float64).
    int64 = client_query(t, "tasks:returns_int64")
    assert int64.value == 5 and type(int64.value) is Int64


def test_return_values_are_normalized(t: TestBackend) -> None:
    value = client_query(t, "tasks:returns_int").value
    assert value == {"n": 1.0, "nested": [2.0]}
    assert type(value["n"]) is float and type(value["nested"][0]) is float
    assert client_query(t, "tasks:returns_nothing").value is None
    assert isinstance(client_query(t, "tasks:returns_tuple").error, InvalidValue)
    assert isinstance(client_query(t, "tasks:returns_huge_int").error, InvalidValue)


# ---------------------------------------------------------------------- errors


def test_convex_error_data_is_preserved(t: TestBackend) -> None:
    outcome = client_mutation(t, "tasks:add_then_fail", {"title": "x"})
    assert isinstance(outcome.error, ConvexError)
    assert outcome.error.data == {"code": "NOPE", "title": "x", "n": Int64(3)}
    assert type(outcome.error.data["n"]) is Int64
    assert outcome.ok is False
    with pytest.raises(ConvexError) as info:
        outcome.unwrap()
    assert info.value is outcome.error
    # The mutation's writes were rolled back.
    assert t.query("tasks:list") == []
    message, data, is_convex = format_error(outcome.error, request_id="r1", dev=False)
    assert is_convex is True
    assert data == outcome.error.data
    assert message.startswith("[Request ID: r1] Server Error")
    string_error = client_query(t, "tasks:convex_string_error").error
    assert isinstance(string_error, ConvexError)
    assert string_error.data == "just a message"
    assert str(string_error) == "just a message"


def test_test_kit_raises_convex_errors_with_data(t: TestBackend) -> None:
    with pytest.raises(ConvexError) as info:
        t.mutation("tasks:add_then_fail", {"title": "y"})
    assert info.value.data["code"] == "NOPE"


def test_plain_exceptions_become_outcome_errors(t: TestBackend) -> None:
    outcome = client_mutation(t, "tasks:add_then_crash")
    assert isinstance(outcome.error, ZeroDivisionError)
    assert outcome.value is None
    assert outcome.ts is None
    assert t.query("tasks:list") == []
    dev_message, data, is_convex = format_error(outcome.error, request_id="abc", dev=True)
    assert data is None and is_convex is False
    assert dev_message.startswith("[Request ID: abc] Server Error\nUncaught ZeroDivisionError")
    assert "add_then_crash" in dev_message
    prod_message, _, _ = format_error(outcome.error, request_id="abc", dev=False)
    assert prod_message == "[Request ID: abc] Server Error"
    with pytest.raises(ZeroDivisionError):
        t.mutation("tasks:add_then_crash")


def test_caller_errors_are_shown_even_in_production(t: TestBackend) -> None:
    outcome = client_query(t, "tasks:echo", {"title": 1})
    message, _, _ = format_error(outcome.error, request_id="x", dev=False)  # type: ignore[arg-type]
    assert "ArgumentValidationError" in message


# ---------------------------------------------------------------------- outcomes


def test_query_outcome(t: TestBackend) -> None:
    t.mutation("tasks:add", {"title": "a"})
    outcome = client_query(t, "tasks:list")
    assert outcome.ok
    assert outcome.kind is FunctionKind.QUERY
    assert outcome.path == "tasks:list"
    assert outcome.value == ["a"]
    assert outcome.ts == t.database.last_ts
    assert outcome.read_set is not None and outcome.read_set.interval_count() == 1
    assert outcome.writes is None
    assert outcome.duration_ms >= 0
    assert len(outcome.request_id) == 16


def test_mutation_outcome(t: TestBackend) -> None:
    before = t.database.last_ts
    outcome = client_mutation(t, "tasks:add", {"title": "b"})
    assert outcome.ok
    assert outcome.kind is FunctionKind.MUTATION
    assert outcome.ts is not None and outcome.ts > before
    assert outcome.writes is not None and outcome.writes.doc_ids == {outcome.value}
    again = client_mutation(t, "tasks:add", {"title": "c"})
    assert again.ts > outcome.ts  # type: ignore[operator]


def test_async_calls(t: TestBackend) -> None:
    async def main() -> tuple[Outcome, Outcome, Outcome]:
        added = await t.app.mutation("tasks:add", {"title": "async"})
        listed = await t.app.query("tasks:list")
        hidden = await t.app.query("tasks:secret")
        return added, listed, hidden

    added, listed, hidden = asyncio.run(main())
    assert added.ok and listed.value == ["async"]
    assert listed.ts is not None and listed.ts >= added.ts  # type: ignore[operator]
    assert str(hidden.error) == "Could not find public function for 'tasks:secret'"


def test_a_started_query_answers_as_a_query_and_is_observed_once(t: TestBackend) -> None:
    """start_query hands the read over before it returns; its outcome is query()'s,
    and a call that fails before it can start is still one observed failure."""
    seen: list[Outcome] = []
    t.app.executor.observers.append(seen.append)
    submitted: list[Any] = []
    start_read = t.database.start_read

    def recorded(fn: Any) -> Any:
        submitted.append(fn)
        return start_read(fn)

    t.database.start_read = recorded  # type: ignore[method-assign]

    async def main() -> tuple[Outcome, Outcome, Outcome]:
        await t.app.mutation("tasks:add", {"title": "started"})
        started = t.app.executor.start_query("tasks:list", {})
        assert len(submitted) == 1  # handed over already, before anything is awaited
        listed = await started
        missing = await t.app.executor.start_query("tasks:nope", {})
        crashed = await t.app.executor.start_query("tasks:echo", {"title": 1.0})
        return listed, missing, crashed

    listed, missing, crashed = asyncio.run(main())
    assert listed.ok and listed.value == ["started"] and listed.kind is FunctionKind.QUERY
    assert listed.ts == t.database.last_ts and listed.read_set is not None
    assert str(missing.error) == "Could not find public function for 'tasks:nope'"
    assert "ArgumentValidationError" in str(crashed.error)  # failed on the read thread
    assert len(submitted) == 2  # the missing function never reached the read threads
    assert [o.path for o in seen if o.kind is not FunctionKind.MUTATION] == [
        "tasks:list",
        "tasks:nope",
        "tasks:echo",
    ]


def test_extra_runs_in_the_same_transaction(t: TestBackend) -> None:
    seen: list[Any] = []

    def extra(tx: Any, result: Any) -> None:
        seen.append(result)
        tx.insert("audit", {"for": result})

    outcome = t.app.executor.mutation_sync("tasks:add", {"title": "x"}, extra=extra)
    assert seen == [outcome.value]
    audit = t.run(lambda ctx: ctx.db.query("audit").collect())
    assert [a["for"] for a in audit] == [outcome.value]

    def failing_extra(tx: Any, result: Any) -> None:
        raise RuntimeError("extra failed")

    failed = t.app.executor.mutation_sync("tasks:add", {"title": "y"}, extra=failing_extra)
    assert isinstance(failed.error, RuntimeError)
    assert t.query("tasks:list") == ["x"]


def test_mutation_context_has_the_registered_members(t: TestBackend) -> None:
    executor = t.app.executor
    executor.register_ctx_member("probe", lambda kind, tx, identity: (kind, identity))

    def body(tx: Any) -> Any:
        ctx = executor.mutation_context(tx, Admin(), seed=7)
        again = executor.mutation_context(tx, Admin(), seed=7)
        return ctx.probe, ctx.random.random(), again.random.random()

    (kind, identity), first, again = t.database.write_sync(body).value
    assert kind == "mutation" and isinstance(identity, Admin)
    assert first == again  # a fixed seed gives the same random numbers


FAILING = """
from syncline import ConvexError, mutation, query


@mutation
def broken(ctx):
    ctx.db.insert("things", {"n": 1})
    raise ValueError("boom")


@query
def rejected(ctx):
    raise ConvexError({"code": "X", "length": len([1, 2, 3])})
"""


def test_a_failed_call_is_logged_with_its_request_id_and_user_file_line(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    backend = make_backend({"failing.py": FAILING})
    with caplog.at_level(logging.INFO, logger="syncline.functions"):
        outcome = backend.app.executor.mutation_sync("failing:broken", {})
    message, _data, _ = format_error(outcome.error, request_id=outcome.request_id, dev=False)
    assert message == f"[Request ID: {outcome.request_id}] Server Error"
    [record] = [r for r in caplog.records if r.name == "syncline.functions"]
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert f"[Request ID: {outcome.request_id}] mutation failing:broken failed" in text
    assert 'failing.py", line 7, in broken' in text
    assert "ValueError: boom" in text
    assert text.count('  File "') == 1  # the user's frame, not ours or the stdlib's


def test_an_expected_failure_is_logged_in_one_line(
    make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    backend = make_backend({"failing.py": FAILING})
    with caplog.at_level(logging.INFO, logger="syncline.functions"):
        outcome = backend.app.executor.query_sync("failing:rejected", {})
    [record] = [r for r in caplog.records if r.name == "syncline.functions"]
    assert record.levelno == logging.INFO
    assert outcome.request_id in record.getMessage()
    assert "Traceback" not in record.getMessage()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"code": "X", "length": 21}, {"code": "X", "length": 21.0}),
        (
            {"outer": {"items": [1, 2, {"deep": 3}]}},
            {"outer": {"items": [1.0, 2.0, {"deep": 3.0}]}},
        ),
        ({"count": Int64(7), "n": 7}, {"count": Int64(7), "n": 7.0}),
        (5, 5.0),
    ],
)
def test_convex_error_data_is_converted_like_a_return_value(data: Any, expected: Any) -> None:
    from syncline.values.json import to_json

    error = ConvexError(data)
    _message, reported, is_convex = format_error(error, request_id="r", dev=False)
    assert is_convex
    assert reported == expected
    assert type(reported) is type(expected)
    to_json(reported)  # a Convex value: it encodes


def test_convex_error_data_that_is_no_value_is_reported_clearly() -> None:
    _message, data, is_convex = format_error(ConvexError({"s": {1, 2}}), request_id="r", dev=True)
    message = _message
    assert not is_convex and data is None
    assert "must be a Convex value" in message and "errorData.s" in message


def test_the_dev_console_shows_the_request_id_and_the_file_and_line(
    make_backend: MakeBackend,
) -> None:
    import click

    from syncline.server.dev import print_outcome

    backend = make_backend({"failing.py": FAILING})
    outcome = backend.app.executor.mutation_sync("failing:broken", {})
    lines: list[str] = []
    print_outcome(outcome, echo=lines.append)
    plain = [click.unstyle(line) for line in lines]
    assert plain[0].endswith("ValueError: boom")
    assert plain[1] == f"    [Request ID: {outcome.request_id}]"
    assert plain[2].startswith("    at broken (") and plain[2].endswith("failing.py:7)")


# ---------------------------------------------------------------------- binding validated arguments

_NAMES = ("a", "b", "c", "d")


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(_NAMES), st.booleans()),
    params=st.dictionaries(st.sampled_from(_NAMES), st.booleans()),
    var_keyword=st.booleans(),
    present=st.sets(st.sampled_from(_NAMES)),
)
def test_validated_arguments_bind_exactly_as_bind_args_says(
    fields: dict[str, bool], params: dict[str, bool], var_keyword: bool, present: set[str]
) -> None:
    """``fields``: name -> optional; ``params``: name -> has a default."""
    signature = ", ".join(
        ["ctx"]
        + [n for n, default in params.items() if not default]
        + [f"{n}=None" for n, default in params.items() if default]
        + (["**rest"] if var_keyword else [])
    )
    namespace: dict[str, Any] = {}
    exec(f"def handler({signature}):\n    return None", namespace)
    validator = v.object(
        {n: v.optional(v.string()) if opt else v.string() for n, opt in fields.items()}
    )
    fn = mutation(args=validator)(namespace["handler"])
    args = {n: "x" for n, opt in fields.items() if not opt or n in present}
    try:
        bind_args(fn, args)
        expected = None
    except ArgumentValidationError as exc:
        expected = str(exc)
    try:
        bind_validated_args(fn, args)
        got = None
    except ArgumentValidationError as exc:
        got = str(exc)
    assert got == expected
    if fn.__dict__["_params"].always_binds:
        assert expected is None
