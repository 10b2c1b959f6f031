"""Where the current call came from: the client's network address, for abuse limits.

The server sets :data:`client_address` when a request arrives (the sync
WebSocket for its whole connection, the HTTP function API per request); calls
made inside inherit it, actions on their action loop included (context
variables travel with ``asyncio.run_coroutine_threadsafe``). Behind a
trusted proxy (``FORWARDED_ALLOW_IPS``) it is the address the proxy reports
in ``X-Forwarded-For``. It is None for calls that have no client: scheduled
functions, cron jobs, the test kit.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["client_address"]

client_address: ContextVar[str | None] = ContextVar("syncline_client_address", default=None)
