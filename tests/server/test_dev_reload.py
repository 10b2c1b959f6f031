"""`syncline dev` hot reload: subscriptions survive edits and follow the latest good code."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conftest import StartServer
from syncline._devtools import ServerProcess
from syncline.client import AsyncClient

pytestmark = pytest.mark.slow


def _module(version: int) -> str:
    return f"""
from syncline import query, mutation, v

@query
def version(ctx):
    return {version}

@mutation(args={{"title": v.string()}})
def add(ctx, title):
    return ctx.db.insert("notes", {{"title": title}})
"""


SCHEMA_V1 = """
from syncline import define_schema, define_table, v
schema = define_schema({"notes": define_table({"title": v.string()})})
"""

SCHEMA_V2 = """
from syncline import define_schema, define_table, v
schema = define_schema({
    "notes": define_table({"title": v.string()}).index("by_title", ["title"]),
})
"""

# Existing notes have a string title: this schema is violated by the data.
SCHEMA_BAD = """
from syncline import define_schema, define_table, v
schema = define_schema({"notes": define_table({"title": v.number()})})
"""


def _write(path: Path, text: str) -> None:
    # Write then rename, as editors do, so the watcher never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def _logged(server: ServerProcess, text: str, timeout: float = 30) -> None:
    """Until the server's log has ``text`` (a reload it reported)."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"the server never logged {text!r}:\n{server.log()}"
        await asyncio.sleep(0.05)


def test_subscription_survives_twenty_edits(tmp_path: Path, start_server: StartServer) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    module = functions / "app.py"
    schema = functions / "schema.py"
    module.write_text(_module(0))
    schema.write_text(SCHEMA_V1)
    server = start_server(tmp_path, mode="dev")

    async def scenario() -> list[float]:
        seen: list[float] = []
        async with AsyncClient(server.url) as client:
            await client.mutation("app:add", {"title": "existing"})
            sub = client.subscribe("app:version")
            updates = sub.__aiter__()
            seen.append(await updates.__anext__())
            for edit in range(1, 21):
                if edit == 7:
                    _write(
                        module,
                        "from syncline import query\n@query\ndef version(ctx):\n    return (\n",
                    )
                    # Rejected: the next value the subscription gets is edit 8's.
                    await _logged(server, "Reload failed")
                    continue
                if edit == 12:
                    _write(schema, SCHEMA_V2)  # adds an index: applied on reload
                if edit == 15:
                    _write(schema, SCHEMA_BAD)  # data violates it: rejected
                    await _logged(server, "does not match the schema")
                    _write(schema, SCHEMA_V2)
                _write(module, _module(edit))
                try:
                    value = await asyncio.wait_for(updates.__anext__(), timeout=30)
                except TimeoutError:
                    raise AssertionError(f"no result after edit {edit} (seen {seen})") from None
                seen.append(value)
                assert value == float(edit), f"edit {edit} served {value}"
            # Still the same connection and session: the mutation path works too.
            await client.mutation("app:add", {"title": "after"})
            assert client._connection_count == 1, "the client had to reconnect"
            await sub.aclose()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == 0.0
    assert seen[1:] == [float(e) for e in range(1, 21) if e != 7]
    log = server.log()
    assert log.count("Reload failed") >= 2  # the broken edit and the violated schema


def test_an_edit_saved_as_soon_as_the_server_answers_reloads(
    tmp_path: Path, start_server: StartServer
) -> None:
    # The watcher is watching before the server answers: an edit made right
    # after start (by a user or a test) is never lost.
    functions = tmp_path / "functions"
    functions.mkdir()
    module = functions / "app.py"
    module.write_text(_module(0))
    server = start_server(tmp_path, mode="dev")
    _write(module, _module(1))

    async def served() -> float:
        async with AsyncClient(server.url) as client:
            await _logged(server, "Reloaded")
            return float(await client.query("app:version", {}))

    assert asyncio.run(served()) == 1.0


def _app_project(root: Path) -> Path:
    """``root/functions/app.py`` at version 0; the module's path."""
    functions = root / "functions"
    functions.mkdir()
    module = functions / "app.py"
    module.write_text(_module(0))
    return module


def test_dev_rewrites_the_typescript_types_on_every_reload(
    tmp_path: Path, start_server: StartServer
) -> None:
    """`codegen-out` in the project file: types written at start and after each save."""
    module = _app_project(tmp_path)
    (tmp_path / "functions" / "schema.py").write_text(SCHEMA_V1)
    (tmp_path / "syncline.toml").write_text('codegen-out = "web/generated"\n')
    server = start_server(tmp_path, mode="dev")
    api_dts = tmp_path / "web" / "generated" / "api.d.ts"
    assert "version: FunctionReference" in api_dts.read_text()
    assert "renamed" not in api_dts.read_text()
    _write(
        module,
        _module(1)
        + '\n@query(returns=v.array(v.doc("notes")))\ndef renamed(ctx):\n    return []\n',
    )
    asyncio.run(_logged(server, "Reloaded"))
    deadline = time.monotonic() + 30
    expected = (
        'renamed: FunctionReference<"query", "public", Record<string, never>, Array<Doc<"notes">>>'
    )
    while expected not in api_dts.read_text():
        assert time.monotonic() < deadline, api_dts.read_text()
        time.sleep(0.05)
    assert server.log().count("Types updated") == 2


def test_the_banner_shows_no_object_reprs(tmp_path: Path, start_server: StartServer) -> None:
    _app_project(tmp_path)
    for mode in ("dev", "serve"):
        server = start_server(tmp_path, mode=mode)
        asyncio.run(_logged(server, "Files:"))  # the banner is printed as the ports open
        banner = server.log()
        assert "API and sync:" in banner and "Files:" in banner, banner
        assert " object at 0x" not in banner and "<syncline." not in banner, banner
        server.stop()


def test_failed_calls_name_their_error_type_once(tmp_path: Path, start_server: StartServer) -> None:
    _app_project(tmp_path)
    server = start_server(tmp_path, mode="dev")

    async def call() -> None:
        async with AsyncClient(server.url) as client:
            with pytest.raises(Exception, match="ArgumentValidationError"):
                await client.mutation("app:add", {"title": 5})
            # The error a client gets for a near-miss path names the function meant.
            with pytest.raises(Exception, match=r"Did you mean `app:add`\?"):
                await client.mutation("app.add", {"title": "x"})

    asyncio.run(call())
    asyncio.run(_logged(server, "ArgumentValidationError"))
    assert "ArgumentValidationError: ArgumentValidationError" not in server.log()
