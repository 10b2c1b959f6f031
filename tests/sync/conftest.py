"""The server fixtures of ``tests/server`` (a real uvicorn among them), for sync tests."""

from server.conftest import (  # noqa: F401  (fixtures are found by name)
    keys,
    live_server,
    make_live_server,
    make_server,
    server,
)
