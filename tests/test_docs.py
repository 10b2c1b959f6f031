"""The documentation in ``docs/`` is tested: this file fails when the docs drift from the code.

What is checked:

* **CLI** — every command and subcommand of ``syncline`` (walked from the click
  group) has a ``<!-- help: syncline CMD -->`` block in ``docs/reference/cli.md``
  holding its current ``--help`` output verbatim. After changing a command's
  help, regenerate the blocks with ``python tests/test_docs.py --update-cli``.
* **Public API** — every name in ``syncline.__all__`` appears in code in the
  reference pages (``tests/test_public_api.py``, against the pinned list); so
  do the members of ``ctx`` (for every kind of function,
  registered services included), the ``v.*`` builders, the query builder, the
  HTTP router, request and response, ``CronJobs``, ``TestBackend``, the Python
  clients, and every route of the API port.
* **Error codes** — every code an error can carry (the class-level ``code`` of
  every ``SynclineError`` subclass, and every literal ``code="..."`` in
  ``src/syncline``) is listed, in backticks, in ``docs/reference/errors.md``.
* **Examples** — the Python code blocks of every page (the quickstart and
  the reference pages above all) that contain ``from syncline import`` are run. A block
  whose first line is a path comment becomes a file of a throwaway project,
  one project per page:

  - ``# functions/tasks.py`` writes the file (later blocks with the same
    header on the page are appended to it);
  - ``# functions/tasks.py (add ...)`` appends to it (also to a template file);
  - ``# functions/tasks.py (excerpt)`` is not written: each of its lines must
    appear, in order, in the file as the page has built it so far;
  - ``# tests/test_x.py`` is a test: it is executed in the project folder and
    its ``test_*`` functions (no parameters) are called.

  The project's functions folder is then loaded by
  :class:`syncline.testing.TestBackend` (every module imported, the schema,
  cron jobs, HTTP routes and auth providers checked), and the tests run. Pages
  marked ``<!-- docs-test: template -->`` start from the ``syncline init``
  template. Any other block containing ``from syncline import`` is compiled,
  its ``syncline`` imports are resolved and its ``v.*`` calls checked.
* **Links** — relative links between the pages point to files that exist.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import syncline

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_MD = DOCS / "reference" / "cli.md"
HELP_WIDTH = 80
REFERENCE_PAGES = [
    "ctx",
    "database",
    "validators",
    "schema",
    "scheduler",
    "storage",
    "http",
    "auth",
    "env",
    "errors",
    "limits",
    "testing",
    "python-client",
    "http-api",
    "cli",
    "project-file",
]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
PATH_HEADER = re.compile(r"^#\s+((?:functions|tests)/[\w/]+\.py)\b(.*)$")
HELP_BLOCK = re.compile(
    r"<!-- help: (?P<cmd>[^>]*?) -->\n```text\n(?P<body>.*?)```\n<!-- /help -->", re.DOTALL
)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def reference_pages() -> list[Path]:
    return sorted((DOCS / "reference").glob("*.md"))


def code_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, code) of every fenced block."""
    for match in FENCE.finditer(text):
        yield match.group(1), match.group(2)


def code_text(pages: list[Path]) -> str:
    """Everything written as code in ``pages``: inline `code` spans and fenced blocks."""
    parts = []
    for page in pages:
        text = read(page)
        parts.extend(code for _, code in code_blocks(text))
        spans = re.findall(r"`([^`]+)`", FENCE.sub("", text))
        parts.extend(span for span in spans if "\n\n" not in span)
    return "\n".join(parts)


def test_docs_exist() -> None:
    expected = [
        "index.md",
        "quickstart.md",
        "deployment.md",
        "clients.md",
        "concepts/functions.md",
        "concepts/reactivity.md",
        "concepts/transactions.md",
        "concepts/scheduling.md",
        *(f"reference/{name}.md" for name in REFERENCE_PAGES),
    ]
    missing = [name for name in expected if not (DOCS / name).is_file()]
    assert not missing, f"missing pages: {missing}"


# --------------------------------------------------------------------------- CLI


def cli_commands() -> list[tuple[str, ...]]:
    """Every command path of the ``syncline`` group, groups included: ("env", "set"), ..."""
    from syncline.cli import main

    found: list[tuple[str, ...]] = []
    ctx = click.Context(main)

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(main, ())
    return found


def help_text(path: tuple[str, ...]) -> str:
    from click.testing import CliRunner

    from syncline.cli import main

    result = CliRunner().invoke(
        main,
        [*path, "--help"],
        prog_name="syncline",
        terminal_width=HELP_WIDTH,
        max_content_width=HELP_WIDTH,
    )
    assert result.exit_code == 0, result.output
    return result.output


def help_blocks(text: str) -> dict[str, str]:
    return {m.group("cmd").strip(): m.group("body") for m in HELP_BLOCK.finditer(text)}


def update_cli_help() -> list[str]:
    """Rewrite the help blocks of cli.md from the current ``--help`` output; return changes."""
    text = read(CLI_MD)
    changed = []

    def replace(match: re.Match[str]) -> str:
        cmd = match.group("cmd").strip()
        words = tuple(cmd.split()[1:])
        body = help_text(words)
        if body != match.group("body"):
            changed.append(cmd)
        return f"<!-- help: {cmd} -->\n```text\n{body}```\n<!-- /help -->"

    text = HELP_BLOCK.sub(replace, text)
    CLI_MD.write_text(text, encoding="utf-8")
    return changed


def test_every_cli_command_is_documented_with_its_current_help() -> None:
    blocks = help_blocks(read(CLI_MD))
    problems = []
    for path in [(), *cli_commands()]:
        name = " ".join(("syncline", *path))
        if name not in blocks:
            problems.append(f"{name}: no <!-- help: {name} --> block in docs/reference/cli.md")
        elif blocks[name] != help_text(path):
            problems.append(f"{name}: its help block is out of date")
    known = {" ".join(("syncline", *p)) for p in [(), *cli_commands()]}
    problems += [f"{name}: documented but not a command" for name in blocks if name not in known]
    assert not problems, (
        "\n".join(problems) + "\n(run `python tests/test_docs.py --update-cli`, then check the "
        "prose around the changed blocks)"
    )


def test_every_cli_option_is_mentioned_outside_the_help_blocks() -> None:
    """The prose (option tables, examples) names every option, not only the pasted help."""
    from syncline.cli import main

    prose = HELP_BLOCK.sub("", read(CLI_MD))
    missing = []
    ctx = click.Context(main)
    for path in cli_commands():
        command: click.Command | None = main
        for word in path:
            assert isinstance(command, click.Group)
            command = command.get_command(ctx, word)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option):
                names = [n for n in param.opts if n.startswith("--") and n != "--help"]
                if names and not any(n in prose for n in names):
                    missing.append(f"syncline {' '.join(path)} {names[0]}")
    assert not missing, f"options not described in cli.md: {missing}"


# --------------------------------------------------------------------------- public API


def public_names(obj: object) -> list[str]:
    return sorted(
        name
        for name, _ in inspect.getmembers(obj)
        if not name.startswith("_") and name not in ("mro",)
    )


def own_public_methods(cls: type) -> list[str]:
    """Public callables and properties defined by ``cls`` and its non-builtin bases."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", "typing", "collections.abc", "abc"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if callable(value) or isinstance(value, property | staticmethod | classmethod):
                names.add(name)
    return sorted(names)


def _require(page: str, names: list[str], pattern: str) -> None:
    code = code_text([DOCS / "reference" / page])
    missing = [n for n in names if not re.search(pattern.format(name=re.escape(n)), code)]
    assert not missing, f"not documented in docs/reference/{page}: {missing}"


def test_ctx_members_are_documented(tmp_path: Path) -> None:
    from syncline.functions.context import ActionCtx, MutationCtx, QueryCtx
    from syncline.testing import TestBackend

    (tmp_path / "functions").mkdir()
    members: set[str] = set()
    for cls in (QueryCtx, MutationCtx, ActionCtx):
        members.update(own_public_methods(cls))
    with TestBackend(tmp_path / "functions") as t:
        # Members that services add (storage, scheduler, env, ...), as the server has them.
        members.update(t.app.executor._ctx_members)
        ctx_attrs = t.run(lambda ctx: [n for n in vars(ctx) if not n.startswith("_")])
    members.update(ctx_attrs)
    _require("ctx.md", sorted(members), r"ctx\.{name}\b")


def test_validators_are_documented() -> None:
    from syncline import v
    from syncline.values.validators import VObject

    _require("validators.md", public_names(v), r"v\.{name}\(")
    helpers = [m for m in own_public_methods(VObject) if m not in ("validate", "to_json")]
    _require("validators.md", helpers, r"\.{name}\b")


def test_database_api_is_documented() -> None:
    from syncline.database.query import FilterBuilder, IndexRangeBuilder, Query
    from syncline.functions.context import DatabaseWriter, SystemReader

    query_methods = [m for m in own_public_methods(Query) if m != "fingerprint"]
    _require("database.md", query_methods, r"\.{name}\(")
    _require("database.md", own_public_methods(FilterBuilder), r"q\.{name}\(")
    range_methods = [
        m for m in own_public_methods(IndexRangeBuilder) if m not in ("compile", "describe")
    ]
    _require("database.md", range_methods, r"q\.{name}\(")
    _require("database.md", own_public_methods(DatabaseWriter), r"db\.{name}\(")
    _require("database.md", own_public_methods(SystemReader), r"db\.system\.{name}\(")


def test_schema_api_is_documented() -> None:
    from syncline.schema import TableDefinition

    methods = [m for m in own_public_methods(TableDefinition) if not m.endswith("indexes")]
    _require("schema.md", methods, r"\b{name}\b")


def test_http_api_is_documented() -> None:
    from syncline import HttpRequest, HttpResponse, HttpRouter

    router = [m for m in own_public_methods(HttpRouter) if m not in ("lookup", "routes")]
    _require("http.md", router, r"\.{name}\(")
    _require("http.md", own_public_methods(HttpRequest), r"\b{name}\b")
    _require("http.md", own_public_methods(HttpResponse), r"\b{name}\b")
    for attribute in ("method", "url", "path", "headers", "query"):
        _require("http.md", [attribute], r"request\.{name}\b")


def test_crons_and_scheduler_are_documented() -> None:
    from syncline import CronJobs
    from syncline.scheduling.ctx_scheduler import ActionScheduler, MutationScheduler

    _require("scheduler.md", own_public_methods(CronJobs), r"crons\.{name}\(")
    methods = set(own_public_methods(MutationScheduler)) | set(own_public_methods(ActionScheduler))
    _require("scheduler.md", sorted(methods), r"scheduler\.{name}\(")


def test_storage_is_documented() -> None:
    from syncline.files.ctx_storage import ActionStorage, MutationStorage

    methods = set(own_public_methods(MutationStorage)) | set(own_public_methods(ActionStorage))
    _require("storage.md", sorted(methods), r"storage\.{name}\(")


def test_test_backend_is_documented() -> None:
    from syncline.testing import TestBackend

    _require("testing.md", own_public_methods(TestBackend), r"\.{name}\b")


def test_python_clients_are_documented() -> None:
    from syncline.client import AsyncClient, Client

    methods = set(own_public_methods(Client)) | set(own_public_methods(AsyncClient))
    _require("python-client.md", sorted(methods), r"\.{name}\b")


def error_codes() -> dict[str, list[str]]:
    """Every error code Syncline can raise: ``{code: [where it is set]}``.

    Class-level ``code = "..."`` of every :class:`SynclineError` subclass (all
    modules imported, subclasses walked) and every literal ``code="..."`` passed
    to a call in ``src/syncline`` (found in the source, so a code set only at a
    ``raise`` site is not missed).
    """
    import importlib
    import pkgutil

    from syncline.errors import SynclineError

    codes: dict[str, list[str]] = {}
    for module in pkgutil.walk_packages(syncline.__path__, "syncline."):
        if module.name.split(".")[-1] != "__main__":
            importlib.import_module(module.name)
    pending: list[type[SynclineError]] = [SynclineError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if isinstance(cls.__dict__.get("code"), str):
            codes.setdefault(cls.code, []).append(f"{cls.__module__}.{cls.__qualname__}")
    src = Path(syncline.__file__).parent
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                value = keyword.value
                if (
                    keyword.arg == "code"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    where = f"{path.relative_to(src.parent)}:{node.lineno}"
                    codes.setdefault(value.value, []).append(where)
    return codes


def test_error_codes_are_documented() -> None:
    table = read(DOCS / "reference" / "errors.md")
    undocumented = {
        code: where
        for code, where in sorted(error_codes().items())
        if not re.search(rf"`{re.escape(code)}`", table)
    }
    assert not undocumented, "error codes missing from docs/reference/errors.md " + (
        "(add each, in backticks, to the table of its area): "
        + "; ".join(f"`{code}` (set at {', '.join(where)})" for code, where in undocumented.items())
    )


def api_routes() -> list[str]:
    """The paths of the API port's HTTP routes (Starlette routes below the ASGI wrappers)."""
    from syncline.server.app import create_app
    from syncline.testing import TestBackend

    with TestBackend() as t:
        app: object = create_app(t.app, manage_lifecycle=False)
        while not hasattr(app, "routes"):
            app = app.app  # type: ignore[attr-defined]
        return sorted({route.path for route in app.routes})  # type: ignore[attr-defined]


def test_every_api_route_is_documented() -> None:
    page = read(DOCS / "reference" / "http-api.md")
    missing = [path for path in api_routes() if path.split("{")[0].rstrip("/") not in page]
    assert not missing, f"API routes missing from docs/reference/http-api.md: {missing}"


# --------------------------------------------------------------------------- links


def test_relative_links_resolve() -> None:
    broken = []
    for page in all_pages():
        text = FENCE.sub("", read(page))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file_part = target.split("#", 1)[0]
            if not (page.parent / file_part).resolve().exists():
                broken.append(f"{page.relative_to(DOCS)} -> {target}")
    assert not broken, f"broken links: {broken}"


# --------------------------------------------------------------------------- examples


@dataclass
class Example:
    header: str
    path: str
    mode: str  # "write", "append", "excerpt", "test"
    code: str


def page_examples(page: Path) -> tuple[list[Example], list[str]]:
    """(project examples, other syncline snippets) of one page."""
    examples: list[Example] = []
    snippets: list[str] = []
    for lang, code in code_blocks(read(page)):
        if lang not in ("python", "py"):
            continue
        first = code.split("\n", 1)[0].strip()
        header = PATH_HEADER.match(first)
        if header is not None:
            path, rest = header.group(1), header.group(2).lower()
            if path.startswith("tests/"):
                mode = "test"
            elif "excerpt" in rest:
                mode = "excerpt"
            elif "add" in rest:
                mode = "append"
            else:
                mode = "write"
            examples.append(Example(first, path, mode, code))
        elif "from syncline import" in code or "import syncline" in code:
            snippets.append(code)
    return examples, snippets


def example_pages() -> list[Path]:
    """Every page: quickstart and reference pages hold the projects; the others are checked too."""
    return all_pages()


def check_snippet(code: str, where: str) -> None:
    """Compile; resolve ``from syncline... import`` names; check ``v.*`` builders exist."""
    from syncline import v

    tree = ast.parse(code, filename=where)
    compile(tree, where, "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("syncline"):
            module = __import__(node.module, fromlist=["*"])
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "v"
        ):
            assert hasattr(v, node.attr), f"{where}: there is no v.{node.attr}"


def build_project(page: Path, root: Path) -> list[Example]:
    """Write the page's project below ``root``; return its test examples."""
    from syncline.commands.init import write_project

    if "<!-- docs-test: template -->" in read(page):
        write_project(root, force=True)
        for test_file in (root / "tests").glob("*.py"):
            test_file.unlink()  # the page's own tests run, not the template's
    (root / "functions").mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    tests = []
    for example in page_examples(page)[0]:
        target = root / example.path
        if example.mode == "test":
            tests.append(example)
            continue
        if example.mode == "excerpt":
            have = target.read_text().splitlines() if target.exists() else []
            position = 0
            for line in example.code.splitlines()[1:]:
                if not line.strip() or line.strip() == "...":
                    continue
                while position < len(have) and have[position] != line:
                    position += 1
                assert position < len(have), (
                    f"{page.name}: {example.header}: line not found (in order) in "
                    f"{example.path}: {line!r}"
                )
                position += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if example.mode == "write" and example.path not in written:
            target.write_text(example.code)
        else:
            with target.open("a") as f:
                f.write("\n\n" + example.code)
        written.add(example.path)
    return tests


def run_page(page: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncline.testing import TestBackend

    tests = build_project(page, root)
    # Loading checks every module, the schema, crons, HTTP routes and auth providers.
    with TestBackend(root / "functions"):
        pass
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    for example in tests:
        namespace: dict[str, object] = {
            "__name__": f"docs_{page.stem}",
            "__file__": str(root / example.path),
        }
        (root / example.path).parent.mkdir(parents=True, exist_ok=True)
        (root / example.path).write_text(example.code)
        exec(compile(example.code, f"{page.name}: {example.header}", "exec"), namespace)
        ran = 0
        for name, fn in list(namespace.items()):
            if name.startswith("test_") and callable(fn):
                assert not inspect.signature(fn).parameters, (
                    f"{page.name}: {name} takes parameters; doc tests are called without any"
                )
                fn()
                ran += 1
        assert ran, f"{page.name}: {example.header} defines no test_* function"


@pytest.mark.parametrize("page", example_pages(), ids=lambda p: p.name)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples, snippets = page_examples(page)
    for i, code in enumerate(snippets):
        check_snippet(code, f"{page.name} snippet {i + 1}")
    if examples:
        run_page(page, tmp_path / "project", monkeypatch)
    for module in [m for m in sys.modules if m == "functions" or m.startswith("functions.")]:
        del sys.modules[module]


if __name__ == "__main__":
    if sys.argv[1:] == ["--update-cli"]:
        os.chdir(ROOT)
        updated = update_cli_help()
        print("updated: " + (", ".join(updated) if updated else "nothing (already current)"))
    else:
        print("usage: python tests/test_docs.py --update-cli")
        sys.exit(2)
