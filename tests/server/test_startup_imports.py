"""What a server process loads before its first request.

Every module loaded at start-up stays resident for the life of the process.
Verifying user tokens needs PyJWT, ``cryptography`` and httpx (about 20 MiB
together, a third of an idle server): they load with the first token, so a
deployment without auth, or one whose clients have not yet sent a token,
never carries them. Built-in auth, snapshots and the other CLI commands load
when an app, a request or a command uses them.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: loaded on first use only
ON_DEMAND = ("jwt", "httpx", "cryptography")
#: Syncline's own modules a server without built-in auth or backups does not load
SYNCLINE_ON_DEMAND = (
    "syncline.accounts",
    "syncline.snapshot",
    "syncline.commands.deploy",
    "syncline.commands.logs",
    "syncline.commands.snapshot",
    "difflib",
)

SERVER_STACK = (
    "syncline.cli",
    "syncline.commands.serve",
    "syncline.application",
    "syncline.server.run",
)


def _modules_after(statement: str) -> set[str]:
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def _loaded_after(statement: str) -> set[str]:
    return {name.split(".")[0] for name in _modules_after(statement)}


def test_the_server_stack_loads_no_token_verification_libraries() -> None:
    loaded = _loaded_after("import " + ", ".join(SERVER_STACK))
    assert not loaded & set(ON_DEMAND), f"loaded at start-up: {sorted(loaded & set(ON_DEMAND))}"


def test_a_server_without_built_in_auth_or_backups_loads_neither() -> None:
    """The server stack, plus what ``serve`` runs at start: opening an app and its routes."""
    loaded = _modules_after(
        "import " + ", ".join(SERVER_STACK) + "\n"
        "import tempfile, pathlib\n"
        "from syncline.application import Application\n"
        "from syncline.server.app import create_app\n"
        "root = pathlib.Path(tempfile.mkdtemp())\n"
        "(root / 'functions').mkdir()\n"
        "(root / 'functions' / 'tasks.py').write_text("
        "'from syncline import query\\n@query\\ndef list(ctx):\\n    return []\\n')\n"
        "app = Application.open(root, dev=False)\n"
        "create_app(app)\n"
        "assert app.issuer is None\n"
        "app.close()"
    )
    early = sorted(
        name
        for name in loaded
        if any(name == lazy or name.startswith(lazy + ".") for lazy in SYNCLINE_ON_DEMAND)
    )
    assert not early, f"loaded at start-up: {early}"
    assert "syncline.commands.serve" in loaded  # the test can see what it looks for


def test_built_in_auth_loads_for_an_app_that_uses_it() -> None:
    loaded = _modules_after(
        "import tempfile, pathlib\n"
        "from syncline.application import Application\n"
        "root = pathlib.Path(tempfile.mkdtemp())\n"
        "(root / 'functions').mkdir()\n"
        "(root / 'functions' / 'auth.py').write_text("
        "'from syncline.accounts import Password, convex_auth\\n'"
        "'auth = convex_auth(providers=[Password()])\\n'"
        "'signIn, signOut, store, isAuthenticated = auth\\n')\n"
        "app = Application.open(root, dev=False)\n"
        "assert app.issuer is not None\n"
        "app.close()"
    )
    assert "syncline.accounts.issuer" in loaded


def test_they_load_when_a_token_is_verified() -> None:
    loaded = _loaded_after(
        "from syncline.auth.verifier import AuthVerifier\n"
        "from syncline.clock import SystemClock\n"
        "from syncline.errors import AuthError\n"
        "import asyncio\n"
        "async def main():\n"
        "    try:\n"
        "        await AuthVerifier([], clock=SystemClock()).verify('a.b.c')\n"
        "    except AuthError:\n"
        "        pass\n"
        "asyncio.run(main())"
    )
    assert "jwt" in loaded
