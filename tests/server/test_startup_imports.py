"""What a server process loads before its first request.

Every module loaded at start-up stays resident for the life of the process.
Verifying user tokens needs PyJWT, ``cryptography`` and httpx (about 20 MiB
together, a third of an idle server): they load with the first token, so a
deployment without auth, or one whose clients have not yet sent a token,
never carries them.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: loaded on first use only
ON_DEMAND = ("jwt", "httpx", "cryptography")

SERVER_STACK = (
    "syncline.cli",
    "syncline.commands.serve",
    "syncline.application",
    "syncline.server.run",
)


def _loaded_after(statement: str) -> set[str]:
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return {name.split(".")[0] for name in json.loads(out.stdout)}


def test_the_server_stack_loads_no_token_verification_libraries() -> None:
    loaded = _loaded_after("import " + ", ".join(SERVER_STACK))
    assert not loaded & set(ON_DEMAND), f"loaded at start-up: {sorted(loaded & set(ON_DEMAND))}"


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
