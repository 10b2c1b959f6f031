"""``_system/dashboard/env:*``: the deployment's environment variables.

Reads and writes go through the mutation's transaction, so a change is one
commit that re-runs the live queries that read the variable (and
``env:list``, which reads them all).
"""

from __future__ import annotations

from typing import Any

from syncline.dashboard.errors import dashboard_error
from syncline.env_vars import EnvVarError, read_all, write_changes
from syncline.functions.context import transaction_of
from syncline.functions.registration import RegisteredFunction, internal_mutation, internal_query
from syncline.values.validators import v

__all__ = ["functions"]


@internal_query
def list_variables(ctx: Any) -> list[dict[str, str]]:
    values = read_all(transaction_of(ctx))
    return [{"name": name, "value": values[name]} for name in sorted(values)]


def _change(ctx: Any, name: str, value: str | None) -> None:
    try:
        write_changes(transaction_of(ctx), [(name, value)])
    except EnvVarError as exc:
        raise dashboard_error("BadEnvVar", exc.message) from exc


@internal_mutation(args={"name": v.string(), "value": v.string()})
def set_variable(ctx: Any, name: str, value: str) -> None:
    _change(ctx, name, value)


@internal_mutation(args={"name": v.string()})
def remove_variable(ctx: Any, name: str) -> None:
    _change(ctx, name, None)


def functions() -> dict[str, RegisteredFunction]:
    """The environment page's system functions, by path below ``_system/dashboard/``."""
    return {"env:list": list_variables, "env:set": set_variable, "env:remove": remove_variable}
