"""`syncline dev` hot reload: subscriptions survive edits and follow the latest good code."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from syncline.client import AsyncClient

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def test_subscription_survives_twenty_edits(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    module = functions / "app.py"
    schema = functions / "schema.py"
    module.write_text(_module(0))
    schema.write_text(SCHEMA_V1)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "syncline", "dev", "--dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/version").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

        async def scenario() -> list[float]:
            seen: list[float] = []
            async with AsyncClient(url) as client:
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
                        await asyncio.sleep(0.6)  # broken: nothing new may arrive
                        continue
                    if edit == 12:
                        _write(schema, SCHEMA_V2)  # adds an index: applied on reload
                    if edit == 15:
                        _write(schema, SCHEMA_BAD)  # data violates it: rejected
                        await asyncio.sleep(0.6)
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

        try:
            seen = asyncio.run(scenario())
        except AssertionError as exc:
            server.terminate()
            _, err = server.communicate(timeout=10)
            raise AssertionError(f"{exc}\nserver log:\n{err.decode()[-4000:]}") from None
        assert seen[0] == 0.0
        assert seen[1:] == [float(e) for e in range(1, 21) if e != 7]
    finally:
        if server.returncode is None:
            server.terminate()
        try:
            _, stderr = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
        except ValueError:  # already drained by the failure report above
            stderr = b""
    log = stderr.decode()
    assert "Reload failed" in log  # the broken edit and the violated schema were reported
    assert "does not match the schema" in log
