"""The one error hierarchy of Syncline.

Every error raised by Syncline is a :class:`SynclineError` with a stable
``code`` (a short CamelCase tag that tests, clients and logs match on) and an
HTTP status used when the error answers a request. Messages may change
freely; codes may not.

::

    SynclineError                      InternalError (500)
     +-- ConvexError                   application error raised by user code; carries data
     +-- InvalidRequest                BadRequest (400): malformed input from a caller
     |    +-- InvalidValue             a value that is not a Convex value or breaks a limit
     |    +-- ArgumentValidationError  function args do not match the args validator
     |    +-- InvalidId                a string that is not an id (of the expected table)
     |    +-- FunctionNotFound         no public function at that path
     |    +-- InvalidCursor            pagination cursor from another query
     |    +-- InvalidQuery             bad index range, unknown index, misuse of a query
     +-- ReturnsValidationError        a function's return value does not match `returns`
     +-- SchemaValidationError         SchemaEnforcementError: a write does not match the schema
     +-- SchemaDefinitionError         InvalidSchema: the schema itself is invalid or existing data violates it
     +-- NonexistentDocument           patch/replace/delete of a missing document
     +-- SystemTableError              user code touching a system table the wrong way
     +-- LimitExceeded                 a transaction limit (reads, writes, sizes)
     |    +-- FunctionTimeout          user code ran past its time limit
     |    |    +-- ActionTimeout       ... in an action or HTTP action
     |    +-- MemoryLimitExceeded      the process crossed its memory ceiling during the call
     +-- DeterminismError              network/sleep inside a query or mutation
     +-- AuthError                     Unauthenticated (401): token rejected, with the reason
     +-- Forbidden                     (403): admin-only operation without the admin key
     +-- FunctionDefinitionError       a user module defines something invalid (load time)
     +-- OptimisticConcurrencyControlFailure  a mutation kept conflicting with other commits
     +-- DatabaseUnavailable           (503): the database server cannot be reached (or timed out)
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final


class SynclineError(Exception):
    """Base class. ``code`` is stable; ``message`` is for humans."""

    #: the class's code; an instance may carry a more specific one (``code=`` below)
    code: str = "InternalError"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, str]:
        """The ``{code, message}`` body used for request-level HTTP errors."""
        return {"code": self.code, "message": self.message}


class ConvexError(SynclineError):
    """An application error. ``data`` reaches the caller as ``errorData``.

    Raise it from a function to fail with structured data that is never
    redacted: ``raise ConvexError({"code": "UNAUTHENTICATED"})``.
    """

    code = "ConvexError"
    http_status = 200

    def __init__(self, data: Any = None) -> None:
        self.data = data
        super().__init__(data if isinstance(data, str) else _describe(data))


def _describe(data: Any) -> str:
    """JSON for the message of a ConvexError; ``repr`` for data JSON cannot hold as is.

    Only the message: ``data`` itself reaches callers exactly, in Convex's wire encoding.
    """
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(data)


class _NoErrorData:
    """Marks an absent ``errorData`` (present-but-null means ConvexError with null data)."""

    _instance: _NoErrorData | None = None

    def __new__(cls) -> _NoErrorData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_ERROR_DATA"

    def __bool__(self) -> bool:
        return False


NO_ERROR_DATA: Final = _NoErrorData()
"""The ``errorData`` of a failure that is not a :class:`ConvexError` (the wire omits it)."""


class InvalidRequest(SynclineError):
    code = "BadRequest"
    http_status = 400


class InvalidValue(InvalidRequest):
    code = "InvalidValue"


class ArgumentValidationError(InvalidRequest):
    code = "ArgumentValidationError"


class InvalidId(InvalidRequest):
    code = "InvalidId"


class FunctionNotFound(InvalidRequest):
    code = "FunctionNotFound"
    http_status = 404


class InvalidCursor(InvalidRequest):
    code = "InvalidCursor"


class InvalidQuery(InvalidRequest):
    code = "InvalidQuery"


class ReturnsValidationError(SynclineError):
    code = "ReturnsValidationError"


class SchemaValidationError(SynclineError):
    code = "SchemaEnforcementError"
    http_status = 400


class SchemaDefinitionError(SynclineError):
    code = "InvalidSchema"
    http_status = 400


class NonexistentDocument(SynclineError):
    code = "NonexistentDocument"
    http_status = 400


class SystemTableError(SynclineError):
    code = "SystemTableError"
    http_status = 400


class LimitExceeded(SynclineError):
    """A per-transaction or per-value limit; ``code`` names which one."""

    code = "LimitExceeded"
    http_status = 400


class FunctionTimeout(LimitExceeded):
    """A query or mutation ran longer than its time limit (``--function-timeout``)."""

    code = "FunctionTimeout"


class ActionTimeout(FunctionTimeout):
    """An action or HTTP action ran longer than its time limit (``--action-timeout``)."""

    code = "ActionTimeout"


class MemoryLimitExceeded(LimitExceeded):
    """The server process crossed its memory ceiling (``--max-memory``) while the call ran."""

    code = "MemoryLimitExceeded"


class DeterminismError(SynclineError):
    code = "DeterminismError"


class AuthError(SynclineError):
    code = "Unauthenticated"
    http_status = 401


class Forbidden(SynclineError):
    code = "Forbidden"
    http_status = 403


class FunctionDefinitionError(SynclineError):
    code = "FunctionDefinitionError"


class OptimisticConcurrencyControlFailure(SynclineError):
    """A mutation conflicted with concurrent commits on every attempt; the message names the table."""

    code = "OptimisticConcurrencyControlFailure"
    http_status = 503


class DatabaseUnavailable(SynclineError):
    """The database server cannot be reached, or it cancelled a statement that ran too long.

    Codes: ``DatabaseUnavailable`` (connection lost or refused) and
    ``DatabaseTimeout`` (a statement or lock wait exceeded its timeout).
    """

    code = "DatabaseUnavailable"
    http_status = 503


class InternalError(SynclineError):
    code = "InternalError"
