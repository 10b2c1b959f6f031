"""``_system/dashboard/functions:*``: the deployment's functions, and running any of them.

``functions:list`` reads the registry, not the database: a reload or a deploy
re-runs every live query (``LiveQueryManager.rerun_all``), which is how the
dashboard's list follows new code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncline.dashboard.errors import dashboard_error
from syncline.errors import SynclineError
from syncline.functions.outcomes import format_error
from syncline.functions.registration import (
    FunctionKind,
    RegisteredFunction,
    internal_action,
    internal_query,
)
from syncline.identity import Admin
from syncline.values.validators import v

if TYPE_CHECKING:
    from syncline.application import Application

__all__ = ["functions"]


def _describe(path: str, fn: RegisteredFunction) -> dict[str, Any]:
    module, _, name = path.rpartition(":")
    return {
        "path": path,
        "module": module,
        "name": name,
        "kind": fn.kind.value,
        "visibility": fn.visibility.value,
        "args": None if fn.args is None else fn.args.to_json(),
        "returns": None if fn.returns is None else fn.returns.to_json(),
    }


def functions(app: Application) -> dict[str, RegisteredFunction]:
    """The functions page's system functions for ``app``, by path below ``_system/dashboard/``."""

    @internal_query
    def list_functions(ctx: Any) -> list[dict[str, Any]]:
        registry = app.registry.functions
        return [
            _describe(path, fn)
            for path, fn in sorted(registry.items())
            if fn.kind is not FunctionKind.HTTP_ACTION
        ]

    @internal_action(args={"path": v.string(), "args": v.optional(v.any())})
    async def run(ctx: Any, path: str, args: Any = None) -> dict[str, Any]:
        # As the admin who called: internal functions too, whatever their kind.
        executor = app.executor
        identity = Admin()
        try:
            fn = app.registry.resolve(path, allow_internal=True)
        except SynclineError as exc:
            raise dashboard_error("NotFound", exc.message) from exc
        call_args = {} if args is None else args
        if fn.kind is FunctionKind.QUERY:
            outcome = await executor.query(path, call_args, identity=identity)
        elif fn.kind is FunctionKind.MUTATION:
            outcome = await executor.mutation(path, call_args, identity=identity)
        else:
            outcome = await executor.action(path, call_args, identity=identity)
        result: dict[str, Any] = {
            "logLines": list(outcome.log_lines),
            "durationMs": round(outcome.duration_ms, 3),
        }
        if outcome.error is None:
            return {"status": "success", "value": outcome.value, **result}
        message, data, is_convex = format_error(
            outcome.error, request_id=outcome.request_id, dev=True
        )
        error: dict[str, Any] = {"message": message}
        if is_convex:
            error["data"] = data
        return {"status": "error", "error": error, **result}

    return {"functions:list": list_functions, "functions:run": run}
