"""Decorators, function kinds, paths and references (design §1, semantics §6)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from syncline import (
    action,
    api,
    internal,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
    v,
)
from syncline.errors import FunctionDefinitionError, InvalidRequest
from syncline.functions.paths import FunctionReference, canonicalize_path, function_path
from syncline.functions.registration import FunctionKind, RegisteredFunction, Visibility
from syncline.values.validators import VObject

# ---------------------------------------------------------------------- decorators


def test_bare_decorator() -> None:
    @query
    def count(ctx: Any) -> int:
        """Count things."""
        return 42

    assert isinstance(count, RegisteredFunction)
    assert count.kind is FunctionKind.QUERY
    assert count.visibility is Visibility.PUBLIC
    assert count.args is None and count.returns is None
    assert count.path is None
    assert count.__name__ == "count"
    assert count.__doc__ == "Count things."
    # Calling the object calls the handler unchanged.
    assert count(None) == 42


def test_called_decorator_with_validators() -> None:
    @mutation(args={"title": v.string()}, returns=v.number())
    def create(ctx: Any, title: str) -> float:
        return 1.0

    assert create.kind is FunctionKind.MUTATION
    assert isinstance(create.args, VObject)
    assert set(create.args.fields) == {"title"}
    assert repr(create.returns) == "v.number()"
    assert create(None, title="x") == 1.0


def test_called_decorator_without_arguments() -> None:
    @query()
    def nothing(ctx: Any) -> None:
        return None

    assert isinstance(nothing, RegisteredFunction)
    assert nothing.args is None


def test_args_as_v_object_or_dict_are_equivalent() -> None:
    @query(args=v.object({"a": v.number(), "b": v.optional(v.string())}))
    def with_object(ctx: Any, a: float, b: str | None = None) -> None: ...

    @query(args={"a": v.number(), "b": v.optional(v.string())})
    def with_dict(ctx: Any, a: float, b: str | None = None) -> None: ...

    assert isinstance(with_object.args, VObject)
    assert with_object.args.to_json() == with_dict.args.to_json()


def test_empty_args_means_no_args() -> None:
    @query(args={})
    def none(ctx: Any) -> None: ...

    assert isinstance(none.args, VObject)
    assert dict(none.args.fields) == {}


@pytest.mark.parametrize("bad", [v.string(), v.array(v.number()), v.any()])
def test_args_must_be_an_object_validator(bad: Any) -> None:
    with pytest.raises(FunctionDefinitionError, match="args"):

        @query(args=bad)
        def f(ctx: Any) -> None: ...


@pytest.mark.parametrize(
    ("decorator", "kind", "visibility", "is_async"),
    [
        (query, FunctionKind.QUERY, Visibility.PUBLIC, False),
        (mutation, FunctionKind.MUTATION, Visibility.PUBLIC, False),
        (action, FunctionKind.ACTION, Visibility.PUBLIC, True),
        (internal_query, FunctionKind.QUERY, Visibility.INTERNAL, False),
        (internal_mutation, FunctionKind.MUTATION, Visibility.INTERNAL, False),
        (internal_action, FunctionKind.ACTION, Visibility.INTERNAL, True),
    ],
)
def test_every_decorator_bare_and_called(
    decorator: Any, kind: FunctionKind, visibility: Visibility, is_async: bool
) -> None:
    if is_async:

        async def handler(ctx: Any) -> str:
            return "ok"

    else:

        def handler(ctx: Any) -> str:
            return "ok"

    for registered in (decorator(handler), decorator(args={})(handler)):
        assert registered.kind is kind
        assert registered.visibility is visibility
        assert registered.handler is handler
        assert kind.value in repr(registered)
        assert visibility.value in repr(registered)


@pytest.mark.parametrize("decorator", [query, mutation, internal_query, internal_mutation])
def test_async_queries_and_mutations_are_rejected_at_decoration(decorator: Any) -> None:
    async def handler(ctx: Any) -> None: ...

    with pytest.raises(FunctionDefinitionError) as info:
        decorator(handler)
    assert "async def" in info.value.message
    assert "action" in info.value.message
    with pytest.raises(FunctionDefinitionError):
        decorator(args={})(handler)


@pytest.mark.parametrize("decorator", [action, internal_action])
def test_sync_actions_are_rejected_at_decoration(decorator: Any) -> None:
    def handler(ctx: Any) -> None: ...

    with pytest.raises(FunctionDefinitionError, match="async def"):
        decorator(handler)


def test_decorating_a_non_function() -> None:
    with pytest.raises(FunctionDefinitionError):
        query(42)


def test_kind_titles() -> None:
    assert [k.title for k in FunctionKind] == ["Query", "Mutation", "Action", "HttpAction"]


def test_importing_syncline_stays_cheap() -> None:
    code = (
        "import sys, syncline\n"
        "from syncline import query, mutation, action, v, api, internal, ConvexError\n"
        "heavy = [m for m in sys.modules if m.startswith(('starlette', 'uvicorn', 'sqlite3',"
        " 'syncline.database', 'syncline.server', 'syncline.persistence'))]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("tasks:list", "tasks:list"),
        ("tasks.js:list", "tasks:list"),
        ("tasks.py:list", "tasks:list"),
        ("tasks", "tasks:default"),
        ("tasks.js", "tasks:default"),
        ("admin/users:get", "admin/users:get"),
        ("admin/users.js:get", "admin/users:get"),
        ("/admin/users:get", "admin/users:get"),
        ("a/b/c/d:e_f2", "a/b/c/d:e_f2"),
        ("my-module:fn", "my-module:fn"),
        ("tasks:_private", "tasks:_private"),
    ],
)
def test_canonicalize_path(path: str, canonical: str) -> None:
    assert canonicalize_path(path) == canonical


@pytest.mark.parametrize(
    "path",
    [
        "",
        ":list",
        "tasks:",
        "tasks:1abc",
        "tasks:__",
        "../x:y",
        "a//b:c",
        "a b:c",
        "tasks:li-st",
        "x:" + "a" * 65,
        None,
        5,
    ],
)
def test_invalid_paths(path: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        canonicalize_path(path)
    assert info.value.code == "InvalidFunctionPath"


def test_api_references() -> None:
    assert api.tasks.list.path == "tasks:list"
    assert api.admin.users.get.path == "admin/users:get"
    assert internal.tasks.enrich.path == "tasks:enrich"
    assert str(api.admin.users.get) == "admin/users:get"
    assert repr(api.admin.users.get) == "api.admin.users.get"
    assert repr(internal.tasks.enrich) == "internal.tasks.enrich"
    assert api.tasks.list == api.tasks.list
    assert hash(api.tasks.list) == hash(api.tasks.list)
    assert api.tasks.list != api.tasks.create
    assert isinstance(api.anything, FunctionReference)


def test_a_module_alone_is_not_a_function_reference() -> None:
    with pytest.raises(InvalidRequest):
        _ = api.tasks.path
    with pytest.raises(AttributeError):
        _ = api.tasks.__wrapped__


def test_function_path_of_every_kind_of_reference() -> None:
    @query
    def loaded(ctx: Any) -> None: ...

    loaded.path = "tasks:loaded"
    assert function_path(api.admin.users.get) == "admin/users:get"
    assert function_path(internal.tasks.enrich) == "tasks:enrich"
    assert function_path("tasks.js:list") == "tasks:list"
    assert function_path("tasks") == "tasks:default"
    assert function_path(loaded) == "tasks:loaded"

    @query
    def not_loaded(ctx: Any) -> None: ...

    with pytest.raises(InvalidRequest, match="no path"):
        function_path(not_loaded)
    with pytest.raises(InvalidRequest):
        function_path(42)
    with pytest.raises(InvalidRequest):
        function_path("bad path:")
