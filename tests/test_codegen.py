"""``syncline codegen``: validator → TypeScript mapping, generated files, and a real ``tsc`` check.

The slow test generates the code for ``tests/codegen/project``, puts it next
to ``tests/codegen/ts/app`` (a React component using ``useQuery`` from the
npm ``convex`` package) and runs ``tsc``: the component type-checks, its
``@ts-expect-error`` lines (wrong arguments) are errors, and a component
calling ``useQuery`` with wrong arguments fails to compile.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import require_node_package
from syncline import Int64, define_schema, define_table, v
from syncline.cli import main
from syncline.codegen import (
    API_DTS,
    API_JS,
    DATA_MODEL_DTS,
    CodegenError,
    args_type,
    field_paths,
    generate,
    ts_type,
)
from syncline.functions.registration import (
    action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)

CODEGEN_DIR = Path(__file__).parent / "codegen"
TS_DIR = CODEGEN_DIR / "ts"
NODE = shutil.which("node")


# ----------------------------------------------------------------------------- type mapping


@pytest.mark.parametrize(
    ("validator", "expected"),
    [
        (v.string(), "string"),
        (v.number(), "number"),
        (v.float64(), "number"),
        (v.int64(), "bigint"),
        (v.boolean(), "boolean"),
        (v.bytes(), "ArrayBuffer"),
        (v.null(), "null"),
        (v.any(), "any"),
        (v.id("users"), 'Id<"users">'),
        (v.id("_storage"), 'Id<"_storage">'),
        (v.doc("tasks"), 'Doc<"tasks">'),
        (v.array(v.doc("tasks")), 'Array<Doc<"tasks">>'),
        (v.array(v.string()), "Array<string>"),
        (v.array(v.union(v.string(), v.null())), "Array<string | null>"),
        (v.record(v.string(), v.number()), "Record<string, number>"),
        (v.record(v.id("users"), v.boolean()), 'Record<Id<"users">, boolean>'),
        (v.union(v.literal("todo"), v.literal("done")), '"todo" | "done"'),
        (v.nullable(v.number()), "number | null"),
        (v.object({}), "Record<string, never>"),
        (v.object({"a": v.string(), "b": v.optional(v.number())}), "{ a: string; b?: number }"),
        (v.object({"n": v.object({"x": v.int64()})}), "{ n: { x: bigint } }"),
        (v.optional(v.string()), "string | undefined"),
        (v.literal('a"b'), '"a\\"b"'),
        (v.literal(True), "true"),
        (v.literal(False), "false"),
        (v.literal(3.0), "3"),
        (v.literal(-2.5), "-2.5"),
        (v.literal(Int64(7)), "7n"),
        (v.literal(math.nan), "number"),
        (v.literal(math.inf), "number"),
        (v.literal(-0.0), "number"),
    ],
)
def test_ts_type(validator: object, expected: str) -> None:
    assert ts_type(validator) == expected  # type: ignore[arg-type]


def test_long_objects_are_written_one_field_per_line() -> None:
    wide = v.object({f"field_number_{i}": v.string() for i in range(6)})
    text = ts_type(v.array(wide), indent="  ")
    assert text.startswith("Array<{\n    field_number_0: string;\n")
    assert text.endswith("    field_number_5: string;\n  }>")


def test_id_type_name_is_configurable() -> None:
    assert ts_type(v.id("t"), id_type="GenericId") == 'GenericId<"t">'


def test_field_paths() -> None:
    doc = v.object(
        {
            "a": v.string(),
            "nested": v.optional(v.object({"b": v.number(), "deeper": v.object({"c": v.null()})})),
            "tags": v.array(v.object({"not": v.string()})),
            "meta": v.record(v.string(), v.any()),
            "blob": v.any(),
        }
    )
    assert field_paths(doc) == [
        "a",
        "nested",
        "nested.b",
        "nested.deeper",
        "nested.deeper.c",
        "tags",
        "meta",
        "meta.*",
        "blob",
        "blob.*",
    ]
    union = v.union(v.object({"x": v.string()}), v.object({"x": v.number(), "y": v.string()}))
    assert field_paths(union) == ["x", "y"]
    assert field_paths(v.any()) is None


def test_args_from_validators_and_from_handler_signatures() -> None:
    @query(args={"channel": v.string(), "limit": v.optional(v.number())})
    def validated(ctx, channel, limit=None):  # type: ignore[no-untyped-def]
        return None

    @query
    def no_args(ctx):  # type: ignore[no-untyped-def]
        return None

    @query
    def loose(ctx, a, b=1, *, c):  # type: ignore[no-untyped-def]
        return None

    @query
    def anything(ctx, **kwargs):  # type: ignore[no-untyped-def]
        return None

    @query(args={})
    def empty(ctx):  # type: ignore[no-untyped-def]
        return None

    assert args_type(validated) == "{ channel: string; limit?: number }"
    assert args_type(no_args) == "Record<string, never>"
    assert args_type(loose) == "{ a: any; b?: any; c: any }"
    assert args_type(anything) == "Record<string, any>"
    assert args_type(empty) == "Record<string, never>"


# ----------------------------------------------------------------------------- generated files


def _functions() -> dict[str, object]:
    @query(args={"channel": v.string()}, returns=v.array(v.object({"body": v.string()})))
    def list_messages(ctx, channel):  # type: ignore[no-untyped-def]
        """The newest messages.

        Details that are not part of the summary."""
        return []

    @mutation(args={"body": v.string()}, returns=v.id("messages"))
    def send(ctx, body):  # type: ignore[no-untyped-def]
        return ""

    @action
    async def ping(ctx):  # type: ignore[no-untyped-def]
        return None

    @internal_query
    def secret(ctx):  # type: ignore[no-untyped-def]
        return 1

    @internal_mutation(args={"id": v.id("messages")})
    def purge(ctx, id):  # type: ignore[no-untyped-def]
        return None

    return {
        "messages:list": list_messages,
        "messages:send": send,
        "jobs/net:ping": ping,
        "messages:secret": secret,
        "admin/cleanup:purge": purge,
        "my-module:default": send,
    }


def test_api_dts() -> None:
    text = generate(_functions(), None)[API_DTS]  # type: ignore[arg-type]
    assert 'import type { FunctionReference } from "convex/server";' in text
    assert 'import type { GenericId as Id } from "convex/values";' in text
    api, internal = text.split("export declare const internal")
    assert (
        '    list: FunctionReference<"query", "public", { channel: string }, '
        "Array<{ body: string }>>;" in api
    )
    assert (
        '    send: FunctionReference<"mutation", "public", { body: string }, Id<"messages">>;'
        in api
    )
    assert "  jobs: {\n    net: {\n" in api
    assert 'ping: FunctionReference<"action", "public", Record<string, never>, any>;' in api
    assert '  "my-module": {\n    default: FunctionReference<"mutation"' in api
    assert "    /**\n     * The newest messages.\n     */\n    list:" in api
    assert "Details" not in api
    assert "secret" not in api and "purge" not in api
    assert 'secret: FunctionReference<"query", "internal", Record<string, never>, any>;' in internal
    assert (
        'purge: FunctionReference<"mutation", "internal", { id: Id<"messages"> }, any>;' in internal
    )
    assert "list" not in internal


def test_api_js_is_convex_any_api() -> None:
    text = generate({}, None)[API_JS]
    assert 'import { anyApi } from "convex/server";' in text
    assert "export const api = anyApi;" in text
    assert "export const internal = anyApi;" in text


def test_empty_project() -> None:
    files = generate({}, None)
    assert "export declare const api: {};" in files[API_DTS]
    assert "export declare const internal: {};" in files[API_DTS]
    assert "import" not in files[API_DTS]
    assert "export type DataModel = AnyDataModel;" in files[DATA_MODEL_DTS]
    assert "export type Doc<TableName extends TableNames> = any;" in files[DATA_MODEL_DTS]


def test_http_actions_are_left_out() -> None:
    from syncline.functions.registration import FunctionKind, RegisteredFunction, Visibility

    async def handler(ctx, request):  # type: ignore[no-untyped-def]
        return None

    http = RegisteredFunction(handler, FunctionKind.HTTP_ACTION, Visibility.PUBLIC, None, None)
    assert "hook" not in generate({"http:hook": http}, None)[API_DTS]


def test_name_collisions_are_reported() -> None:
    @query
    def users(ctx):  # type: ignore[no-untyped-def]
        return None

    @query
    def get(ctx):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(CodegenError, match=r"api\.admin\.users.*Rename"):
        generate({"admin:users": users, "admin/users:get": get}, None)
    with pytest.raises(CodegenError, match=r"api\.admin\.users.*Rename"):
        generate({"admin/users:get": get, "admin:users": users}, None)


def test_data_model_dts() -> None:
    schema = define_schema(
        {
            "users": define_table(
                {"name": v.string(), "profile": v.optional(v.object({"bio": v.string()}))}
            ).index("by_name", ["name"]),
            "posts": define_table(
                {
                    "author": v.id("users"),
                    "body": v.string(),
                    "tags": v.record(v.string(), v.boolean()),
                    "embedding": v.array(v.float64()),
                }
            )
            .search_index("search_body", search_field="body", filter_fields=["author"])
            .vector_index("by_embedding", vector_field="embedding", dimensions=3),
            "events": define_table(
                v.union(
                    v.object({"kind": v.literal("a"), "x": v.number()}),
                    v.object({"kind": v.literal("b")}),
                )
            ),
            "blobs": define_table(v.any()),
        }
    )
    text = generate({}, schema)[DATA_MODEL_DTS]
    assert "export type DataModel = {\n  blobs: {\n" in text
    users = text[text.index("  users: {") :]
    assert users.startswith(
        "  users: {\n"
        "    document: {\n"
        '      _id: GenericId<"users">;\n'
        "      _creationTime: number;\n"
        "      name: string;\n"
        "      profile?: { bio: string };\n"
        "    };\n"
        '    fieldPaths: "_id" | "_creationTime" | "name" | "profile" | "profile.bio";\n'
        "    indexes: {\n"
        '      by_creation_time: ["_creationTime"];\n'
        '      by_id: ["_id"];\n'
        '      by_name: ["name", "_creationTime"];\n'
        "    };\n"
        "    searchIndexes: {};\n"
        "    vectorIndexes: {};\n"
        "  };\n"
    )
    assert '"tags" | `tags.${string}`' in text
    assert 'search_body: { searchField: "body"; filterFields: "author" };' in text
    assert (
        'by_embedding: { vectorField: "embedding"; dimensions: number; filterFields: never };'
        in text
    )
    events = re.search(r"  events: \{\n    document: (.*?);\n", text, re.S)
    assert events is not None
    assert events.group(1) == (
        '{ _id: GenericId<"events">; _creationTime: number; kind: "a"; x: number } | '
        '{ _id: GenericId<"events">; _creationTime: number; kind: "b" }'
    )
    assert (
        '    document: { _id: GenericId<"blobs">; _creationTime: number; [field: string]: any };\n'
        "    fieldPaths: string;\n" in text
    )
    assert "export type TableNames = TableNamesInDataModel<DataModel>;" in text
    assert (
        "export type Doc<TableName extends TableNames> = DocumentByName<DataModel, TableName>;"
        in text
    )
    assert (
        "export type Id<TableName extends TableNames | SystemTableNames> = GenericId<TableName>;"
        in text
    )


# ----------------------------------------------------------------------------- the command


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "app"
    shutil.copytree(CODEGEN_DIR / "project", project)
    return project


def test_codegen_command_writes_the_files(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    result = CliRunner().invoke(main, ["codegen", "--dir", str(project)])
    assert result.exit_code == 0, result.output
    out = project / "convex" / "_generated"
    assert sorted(p.name for p in out.iterdir()) == sorted([API_JS, API_DTS, DATA_MODEL_DTS])
    assert "6 functions and 2 tables" in result.output and "3 file(s) updated" in result.output
    api = (out / API_DTS).read_text()
    assert 'analyse: FunctionReference<"action", "public", { text: string }' in api

    again = CliRunner().invoke(main, ["codegen", "--dir", str(project)])
    assert again.exit_code == 0 and "already up to date" in again.output

    custom = tmp_path / "web" / "generated"
    elsewhere = CliRunner().invoke(main, ["codegen", "--dir", str(project), "--out", str(custom)])
    assert elsewhere.exit_code == 0
    assert (custom / API_DTS).read_text() == api


def test_codegen_command_reports_broken_functions(tmp_path: Path) -> None:
    project = tmp_path / "broken"
    (project / "functions").mkdir(parents=True)
    (project / "functions" / "tasks.py").write_text("import nowhere_to_be_found\n")
    result = CliRunner().invoke(main, ["codegen", "--dir", str(project)])
    assert result.exit_code == 1
    assert "functions/tasks.py" in result.stderr and "nowhere_to_be_found" in result.stderr
    assert not (project / "convex").exists()


# ----------------------------------------------------------------------------- tsc


def _tsc(app: Path) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    tsc = TS_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    return subprocess.run(
        [NODE, str(tsc), "-p", str(app / "tsconfig.json")],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_generated_code_type_checks_with_tsc(tmp_path: Path) -> None:
    require_node_package(TS_DIR, "typescript")
    require_node_package(TS_DIR, "convex")
    project = _copy_project(tmp_path)
    for item in (TS_DIR / "app").iterdir():
        target = project / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy(item, target)
    (project / "node_modules").symlink_to(TS_DIR / "node_modules", target_is_directory=True)
    result = CliRunner().invoke(main, ["codegen", "--dir", str(project)])
    assert result.exit_code == 0, result.output

    # One tsc run (it takes seconds): src/App.tsx must compile, each of its
    # @ts-expect-error lines must be an error (else TS2578), and src/Wrong.tsx,
    # which passes wrong arguments to useQuery and to a mutation, must not compile.
    (project / "src" / "Wrong.tsx").write_text(
        textwrap.dedent(
            """
            import { useMutation, useQuery } from "convex/react";
            import { api } from "../convex/_generated/api";

            export function Wrong() {
              const messages = useQuery(api.messages.list, { channel: 7 });
              const send = useMutation(api.messages.send);
              void send({ channel: "general", body: "no author" });
              return messages;
            }
            """
        ).lstrip()
    )
    wrong = _tsc(project)
    assert wrong.returncode != 0
    errors = [line for line in wrong.stdout.splitlines() if ": error TS" in line]
    assert any(
        line.startswith("src/Wrong.tsx(5,")
        and "Type 'number' is not assignable to type 'string'" in line
        for line in errors
    ), wrong.stdout
    assert any(line.startswith("src/Wrong.tsx(7,") for line in errors), wrong.stdout
    assert "Property 'author' is missing" in wrong.stdout
    # Nothing else failed: App.tsx and the generated .d.ts files type-check.
    assert all(line.startswith("src/Wrong.tsx") for line in errors), wrong.stdout
    assert len(errors) == 2, wrong.stdout


def test_doc_validators_import_doc_from_the_data_model() -> None:
    @query(returns=v.array(v.doc("tasks")))
    def listing(ctx: object) -> None: ...

    listing.path = "tasks:list"
    schema = define_schema({"tasks": define_table({"text": v.string()})})
    api_dts = generate({"tasks:list": listing}, schema)[API_DTS]
    assert 'import type { Doc } from "./dataModel";' in api_dts
    assert 'FunctionReference<"query", "public", Record<string, never>, Array<Doc<"tasks">>>' in (
        api_dts
    )


# ----------------------------------------------------------------------------- quickstart (TSX)

QUICKSTART = Path(__file__).parent.parent / "docs" / "quickstart.md"


def _quickstart_blocks() -> dict[str, str]:
    """The quickstart's web app files (`web/src/X.tsx`:) and its syncline.toml."""
    text = QUICKSTART.read_text()
    files = dict(re.findall(r"`web/(src/\w+\.tsx)`:\n\n```tsx\n(.*?)```", text, re.S))
    toml = re.search(r"```toml\n# syncline.toml\n(.*?)```", text, re.S)
    assert toml is not None, "the quickstart shows no syncline.toml"
    files["syncline.toml"] = toml.group(1)
    return files


@pytest.mark.slow
def test_quickstart_typescript_app_builds_with_tsc_b(tmp_path: Path) -> None:
    """The quickstart's React + TypeScript app, on the template, passes `tsc -b` (Vite's
    build check), and its query results are typed: a wrong use of a task is an error."""
    require_node_package(TS_DIR, "typescript")
    require_node_package(TS_DIR, "convex")
    require_node_package(TS_DIR, "@types/react-dom")
    project = tmp_path / "myapp"
    assert CliRunner().invoke(main, ["init", str(project)]).exit_code == 0
    blocks = _quickstart_blocks()
    assert set(blocks) == {"src/main.tsx", "src/App.tsx", "syncline.toml"}
    (project / "syncline.toml").write_text(blocks.pop("syncline.toml"))
    web = project / "web"
    (web / "src").mkdir(parents=True)
    for name, code in blocks.items():
        (web / name).write_text(code)
    for config in (TS_DIR / "quickstart").glob("tsconfig*.json"):
        shutil.copy(config, web / config.name)
    (web / "node_modules").symlink_to(TS_DIR / "node_modules", target_is_directory=True)
    # The project file's codegen-out is `syncline codegen`'s --out.
    result = CliRunner().invoke(main, ["codegen", "--dir", str(project)])
    assert result.exit_code == 0, result.output
    assert (web / "src" / "convex" / "_generated" / API_DTS).exists()
    # Results are not `any`: each misuse below must be an error, else TS2578 (unused directive).
    (web / "src" / "Typed.tsx").write_text(
        textwrap.dedent(
            """
            import { useQuery } from "convex/react";
            import { api } from "./convex/_generated/api";
            import type { Doc, Id } from "./convex/_generated/dataModel";

            export function Typed() {
              const tasks = useQuery(api.tasks.list);
              const first: Doc<"tasks"> | undefined = tasks?.[0];
              const id: Id<"tasks"> | undefined = first?._id;
              // @ts-expect-error tasks have no `title`
              const title = first?.title;
              // @ts-expect-error `done` is a boolean
              const done: string | undefined = first?.done;
              // @ts-expect-error the result may be undefined while loading
              const count: number = tasks.length;
              return [id, title, done, count];
            }
            """
        ).lstrip()
    )
    tsc = TS_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    assert NODE is not None
    built = subprocess.run(
        [NODE, str(tsc), "-b"], cwd=web, capture_output=True, text=True, timeout=180
    )
    assert built.returncode == 0, built.stdout + built.stderr
