"""System functions: functions built into the server, under the reserved ``_system/`` paths.

The dashboard's queries and mutations (``_system/dashboard/data:tables``, ...)
are registered here by the server; they run in the same executor as the
user's functions, so their queries are live like any other. Only a holder of
the admin key may call them: anyone else (a client, a user's action calling
``ctx.run_query``, a scheduled job) gets the error a missing function gives,
so nothing tells a non-admin that they exist.

Their calls are not counted in the function metrics nor reported to the
executor's observers (the log stream and history): the dashboard reading
itself would otherwise fill the logs it shows.
"""

from __future__ import annotations

from syncline.errors import FunctionNotFound
from syncline.functions.loader import check_kind
from syncline.functions.paths import canonicalize_path
from syncline.functions.registration import FunctionKind, RegisteredFunction
from syncline.identity import Identity, is_admin

__all__ = ["SYSTEM_PREFIX", "SystemFunctions", "is_system_path"]

#: the module path prefix of system functions; user modules cannot start with ``_``
SYSTEM_PREFIX = "_system/"


def is_system_path(path: str) -> bool:
    """Whether ``path`` (as a client sent it, or canonical) names a system function."""
    return path.lstrip("/").startswith(SYSTEM_PREFIX)


class SystemFunctions:
    """The system functions of one executor, by canonical path."""

    def __init__(self) -> None:
        self.functions: dict[str, RegisteredFunction] = {}

    def register(self, path: str, fn: RegisteredFunction) -> None:
        """Serve ``fn`` at ``path`` (which must start with ``_system/``) to admin callers."""
        canonical = canonicalize_path(path)
        if not canonical.startswith(SYSTEM_PREFIX):
            raise ValueError(f"system function paths start with {SYSTEM_PREFIX!r}, got {path!r}")
        fn.path = canonical
        self.functions[canonical] = fn

    def resolve(
        self, path: str, *, kind: FunctionKind | None, identity: Identity
    ) -> RegisteredFunction:
        """The function at ``path`` for an admin; for anyone else, the missing-function error."""
        canonical = canonicalize_path(path)
        if not is_admin(identity):
            raise FunctionNotFound(f"Could not find public function for '{canonical}'")
        fn = self.functions.get(canonical)
        if fn is None:
            raise FunctionNotFound(f"Could not find function for '{canonical}'")
        check_kind(fn, canonical, kind)
        return fn
