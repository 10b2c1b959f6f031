"""The dashboard's errors: a ``ConvexError`` with ``{"code", "message"}`` data.

The dashboard shows ``message`` and branches on ``code``. Errors that
Syncline raises while a system function works (a document the schema
refuses, an index that does not exist) are turned into this form by
:func:`user_errors`; the transaction then fails, so nothing is written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from syncline.errors import (
    ConvexError,
    InvalidCursor,
    InvalidQuery,
    SchemaValidationError,
    SynclineError,
)

__all__ = ["dashboard_error", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def dashboard_error(code: str, message: str) -> ConvexError:
    return ConvexError({"code": code, "message": message})


def _code_of(exc: SynclineError) -> str:
    if isinstance(exc, SchemaValidationError):
        return "SchemaValidationError"
    if isinstance(exc, InvalidQuery | InvalidCursor):
        return "BadQuery"
    return exc.code


def user_errors(handler: F) -> F:
    """Raise Syncline's errors from ``handler`` as :func:`dashboard_error`\\ s."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ConvexError:
            raise
        except SynclineError as exc:
            raise dashboard_error(_code_of(exc), exc.message) from exc

    return wrapper  # type: ignore[return-value]
