"""Loading a functions folder into a registry (design §1, §3.3)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import write_functions
from syncline import HttpRouter
from syncline.errors import FunctionDefinitionError, FunctionNotFound
from syncline.functions.loader import load_functions
from syncline.functions.registration import FunctionKind, Visibility
from syncline.schema import Schema


def loaded_modules(package: str = "functions") -> set[str]:
    return {m for m in sys.modules if m == package or m.startswith(package + ".")}


def test_fixture_project(fixture_project: Callable[[str], Path]) -> None:
    registry = load_functions(fixture_project("tasks_app"))
    assert sorted(registry.functions) == [
        "admin/users:create",
        "admin/users:get",
        "admin/users:tasks_of",
        "tasks:add",
        "tasks:by_status",
        "tasks:default",
        "tasks:finish",
        "tasks:list",
        "tasks:now",
        "tasks:secret",
    ]
    assert isinstance(registry.schema, Schema)
    assert set(registry.schema.tables) == {"users", "tasks"}
    assert registry.functions["tasks:secret"].visibility is Visibility.INTERNAL
    assert registry.functions["tasks:add"].kind is FunctionKind.MUTATION
    # Functions learn their path.
    assert registry.functions["admin/users:get"].path == "admin/users:get"
    # `_private.py` and `_drafts/` are skipped; `lib.py` has no functions.
    assert "_private" not in registry.modules
    assert not any(m.startswith("_drafts") for m in registry.modules)
    assert "lib" in registry.modules


def test_no_init_py_needed_and_subfolders(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "a.py": "from syncline import query\n@query\ndef f(ctx): return 'a'\n",
            "deep/er/b.py": "from syncline import query\n@query\ndef g(ctx): return 'b'\n",
        },
    )
    registry = load_functions(root)
    assert set(registry.functions) == {"a:f", "deep/er/b:g"}
    assert registry.functions["deep/er/b:g"].handler(None) == "b"
    assert not (root / "__init__.py").exists()


def test_package_with_init_py(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "__init__.py": "CONSTANT = 7\n",
            "a.py": "from syncline import query\nfrom functions import CONSTANT\n@query\ndef f(ctx): return CONSTANT\n",
        },
    )
    registry = load_functions(root)
    assert registry.functions["a:f"].handler(None) == 7


def test_modules_import_each_other(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "lib.py": "def helper(): return 'helped'\n",
            "absolute.py": """
                from syncline import query
                from functions.lib import helper

                @query
                def f(ctx):
                    return helper()
            """,
            "relative.py": """
                from syncline import query
                from .lib import helper

                @query
                def f(ctx):
                    return helper() + '!'
            """,
            "sub/nested.py": """
                from syncline import query
                from ..lib import helper
                from . import sibling

                @query
                def f(ctx):
                    return helper() + sibling.SUFFIX
            """,
            "sub/sibling.py": "SUFFIX = '?'\n",
        },
    )
    registry = load_functions(root)
    assert registry.functions["absolute:f"].handler(None) == "helped"
    assert registry.functions["relative:f"].handler(None) == "helped!"
    assert registry.functions["sub/nested:f"].handler(None) == "helped?"


def test_imported_and_aliased_functions_are_registered_once(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "tasks.py": """
                from syncline import query

                @query
                def original(ctx):
                    return 1

                alias = original
            """,
            "other.py": """
                from functions.tasks import original
                from syncline import query

                @query
                def own(ctx):
                    return original.handler(ctx) + 1
            """,
        },
    )
    registry = load_functions(root)
    assert set(registry.functions) == {"tasks:original", "other:own"}
    assert registry.functions["tasks:original"].path == "tasks:original"


def test_private_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "_private.py": "from syncline import query\n@query\ndef f(ctx): return 1\n",
            ".hidden.py": "raise RuntimeError('never imported')\n",
            "_folder/x.py": "raise RuntimeError('never imported')\n",
            ".git/y.py": "raise RuntimeError('never imported')\n",
            "public.py": """
                from syncline import query

                @query
                def _helper(ctx):
                    return 'underscore names are not functions'

                @query
                def visible(ctx):
                    return 'yes'
            """,
        },
    )
    registry = load_functions(root)
    assert set(registry.functions) == {"public:visible"}
    assert registry.modules == ["public"]


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {"good.py": "X = 1\n", "sub/bad.py": "def broken(:\n    pass\n"},
    )
    with pytest.raises(FunctionDefinitionError) as info:
        load_functions(root)
    assert "functions/sub/bad.py" in info.value.message
    assert "SyntaxError" in info.value.message
    # A failed load leaves nothing half-imported behind.
    assert loaded_modules() == set()


def test_import_time_error_names_the_file_and_the_error(tmp_path: Path) -> None:
    root = write_functions(tmp_path / "functions", {"boom.py": "raise ValueError('kaput')\n"})
    with pytest.raises(FunctionDefinitionError) as info:
        load_functions(root)
    assert "functions/boom.py" in info.value.message
    assert "ValueError: kaput" in info.value.message


def test_async_query_in_a_module_names_the_file(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {"bad.py": "from syncline import query\n@query\nasync def f(ctx): return 1\n"},
    )
    with pytest.raises(FunctionDefinitionError) as info:
        load_functions(root)
    assert "functions/bad.py" in info.value.message
    assert "async def" in info.value.message


def test_invalid_schema_module(tmp_path: Path) -> None:
    root = write_functions(tmp_path / "functions", {"schema.py": "schema = {'tasks': 1}\n"})
    with pytest.raises(FunctionDefinitionError, match="define_schema"):
        load_functions(root)


def test_special_modules(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "functions",
        {
            "schema.py": "from syncline import define_schema\nschema = define_schema({})\n",
            "crons.py": "crons = 'the crons object'\n",
            "http.py": "from syncline import HttpRouter\nhttp = HttpRouter()\n",
            "auth_config.py": "providers = [{'domain': 'https://issuer.example.com', 'application_id': 'x'}]\n",
        },
    )
    registry = load_functions(root)
    assert registry.functions == {}
    assert isinstance(registry.schema, Schema)
    assert registry.crons == "the crons object"
    assert isinstance(registry.http, HttpRouter)
    assert registry.auth_providers == [
        {"domain": "https://issuer.example.com", "application_id": "x"}
    ]


def test_providers_must_be_a_list(tmp_path: Path) -> None:
    root = write_functions(tmp_path / "functions", {"auth_config.py": "providers = 'nope'\n"})
    with pytest.raises(FunctionDefinitionError, match="providers"):
        load_functions(root)


def test_missing_folder_and_bad_package_names(tmp_path: Path) -> None:
    with pytest.raises(FunctionDefinitionError, match="does not exist"):
        load_functions(tmp_path / "nope")
    bad = write_functions(tmp_path / "my-functions", {"a.py": "X = 1\n"})
    with pytest.raises(FunctionDefinitionError, match="package name"):
        load_functions(bad)


def test_other_package_names(tmp_path: Path) -> None:
    root = write_functions(
        tmp_path / "backend",
        {
            "lib.py": "VALUE = 3\n",
            "m.py": "from syncline import query\nfrom backend.lib import VALUE\n@query\ndef f(ctx): return VALUE\n",
        },
    )
    registry = load_functions(root)
    assert registry.functions["m:f"].handler(None) == 3


def test_reload_picks_up_new_code_and_forgets_removed_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bytecode caching is on for most users (and only checks mtime in whole seconds
    # and size): an edit within the same second must still be seen.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    root = write_functions(
        tmp_path / "functions",
        {
            "lib.py": "VALUE = 1\n",
            "a.py": "from syncline import query\nfrom functions.lib import VALUE\n@query\ndef f(ctx): return VALUE\n@query\ndef g(ctx): return 0\n",
            "gone.py": "from syncline import query\n@query\ndef h(ctx): return 0\n",
        },
    )
    first = load_functions(root)
    assert first.functions["a:f"].handler(None) == 1
    write_functions(
        root,
        {
            "lib.py": "VALUE = 2\n",
            "a.py": "from syncline import query\nfrom functions.lib import VALUE\n@query\ndef f(ctx): return VALUE\n@query\ndef k(ctx): return 0\n",
        },
    )
    (root / "gone.py").unlink()
    second = load_functions(root)
    assert second.functions["a:f"].handler(None) == 2
    assert set(second.functions) == {"a:f", "a:k"}
    assert "gone" not in second.modules
    assert "functions.gone" not in sys.modules
    # The old registry keeps working with the old code.
    assert first.functions["a:f"].handler(None) == 1


def test_reload_after_a_failed_load(tmp_path: Path) -> None:
    root = write_functions(tmp_path / "functions", {"a.py": "X = (\n"})
    with pytest.raises(FunctionDefinitionError):
        load_functions(root)
    write_functions(
        root, {"a.py": "from syncline import query\n@query\ndef f(ctx): return 'fixed'\n"}
    )
    assert load_functions(root).functions["a:f"].handler(None) == "fixed"


# ---------------------------------------------------------------------- resolving


@pytest.fixture
def registry(fixture_project: Callable[[str], Path]) -> object:
    return load_functions(fixture_project("tasks_app"))


def test_resolve_public_internal_and_missing(registry: object) -> None:
    assert registry.resolve("tasks:list").path == "tasks:list"  # type: ignore[attr-defined]
    assert registry.resolve("tasks.js:list").path == "tasks:list"  # type: ignore[attr-defined]
    assert registry.resolve("tasks").path == "tasks:default"  # type: ignore[attr-defined]
    assert registry.resolve("tasks:secret", allow_internal=True).path == "tasks:secret"  # type: ignore[attr-defined]
    for path in ("tasks:secret", "tasks:missing", "nowhere:list"):
        with pytest.raises(FunctionNotFound) as info:
            registry.resolve(path)  # type: ignore[attr-defined]
        assert info.value.message == f"Could not find public function for '{path}'"


def test_resolve_checks_the_kind(registry: object) -> None:
    with pytest.raises(FunctionNotFound) as info:
        registry.resolve("tasks:add", kind=FunctionKind.QUERY)  # type: ignore[attr-defined]
    assert info.value.message == (
        "Trying to execute tasks:add as Query, but it is defined as Mutation."
    )
    with pytest.raises(FunctionNotFound, match="as Mutation, but it is defined as Query"):
        registry.resolve("tasks:list", kind=FunctionKind.MUTATION)  # type: ignore[attr-defined]


def test_resolve_suggests_the_function_meant(registry: object) -> None:
    for path, meant in (("tasks.add", "tasks:add"), ("tasks:lst", "tasks:list")):
        with pytest.raises(FunctionNotFound) as info:
            registry.resolve(path)  # type: ignore[attr-defined]
        assert info.value.message.endswith(f". Did you mean `{meant}`?"), info.value.message
    # Internal functions are suggested only to callers that may call them.
    with pytest.raises(FunctionNotFound) as info:
        registry.resolve("tasks:secre")  # type: ignore[attr-defined]
    assert "Did you mean" not in info.value.message
    with pytest.raises(FunctionNotFound, match="Did you mean `tasks:secret`"):
        registry.resolve("tasks:secre", allow_internal=True)  # type: ignore[attr-defined]


DOC_SCHEMA = """
from syncline import define_schema, define_table, v
schema = define_schema({"tasks": define_table({"text": v.string()})})
"""


def test_v_doc_is_bound_to_the_schema_at_load(tmp_path: Path) -> None:
    write_functions(
        tmp_path / "functions",
        {
            "schema.py": DOC_SCHEMA,
            "tasks.py": """
from syncline import query, v

@query(returns=v.array(v.doc("tasks")))
def list(ctx):
    return ctx.db.query("tasks").collect()
""",
        },
    )
    registry = load_functions(tmp_path / "functions")
    returns = registry.functions["tasks:list"].returns
    assert returns is not None
    assert returns.to_json() == {"type": "array", "value": registry.schema.doc("tasks").to_json()}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            DOC_SCHEMA,
            r'v.doc\("notes"\) names a table the schema does not define \(tables: `tasks`\)',
        ),
        (None, r'uses v.doc\("notes"\), which needs the table defined in functions/schema.py'),
    ],
)
def test_v_doc_of_a_table_the_schema_lacks_fails_the_load(
    tmp_path: Path, schema: str | None, message: str
) -> None:
    files = {
        "notes.py": """
from syncline import query, v

@query(args={"note": v.doc("notes")})
def show(ctx, note):
    return note
"""
    }
    if schema is not None:
        files["schema.py"] = schema
    write_functions(tmp_path / "functions", files)
    with pytest.raises(FunctionDefinitionError, match=r"functions/notes.py: .*" + message):
        load_functions(tmp_path / "functions")
