"""The SSR side of ``@convex-dev/auth`` 2.0.0, unchanged, against built-in auth.

``auth_app_v2/ssr.mjs`` runs, in Node, what an app's server runs under SSR
(Next.js or another framework): the sign-in proxy, which forwards the page's
sign-in mutations to the deployment and moves the refresh token into an
httpOnly cookie; the refresh and sign-out handlers; and the server-side auth
checker. The page's part is a ``ConvexHttpClient`` aimed at the proxy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from .test_auth_password import APP_V2, app_server_v2  # noqa: F401

pytestmark = pytest.mark.slow

NODE = shutil.which("node")


def test_ssr_proxy_refresh_and_sign_out(app_server_v2: Any) -> None:  # noqa: F811
    assert NODE is not None, "node is not installed"
    server = app_server_v2
    run = subprocess.run(
        [NODE, str(APP_V2 / "ssr.mjs")],
        cwd=APP_V2,
        env={**os.environ, "SYNCLINE_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines, f"ssr.mjs printed nothing (exit {run.returncode}); stderr:\n{run.stderr}"
    result = json.loads(lines[-1])
    failed = {label: c.get("detail") for label, c in result["checks"].items() if not c["ok"]}
    assert run.returncode == 0 and not failed, (failed, run.stderr[-2000:])
    assert len(result["checks"]) == 12
