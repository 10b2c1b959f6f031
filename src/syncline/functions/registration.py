"""Decorators that turn user functions into Syncline functions.

::

    @query
    def count(ctx): ...

    @mutation(args={"title": v.string()}, returns=v.id("tasks"))
    def create(ctx, title): ...

    @internal_action
    async def enrich(ctx, id): ...

A decorated function becomes a :class:`RegisteredFunction`. The loader gives it
its path (``"tasks:create"``) when it finds it in the functions folder; the
object itself can then be used wherever a function reference is expected.
Calling it directly calls the handler unchanged (useful for sharing logic).

This module imports only values and errors: ``from syncline import query``
must stay cheap and must not start a server or open a database.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from syncline.errors import FunctionDefinitionError
from syncline.values.validators import Validator, VObject, as_validator

F = TypeVar("F", bound=Callable[..., Any])


class FunctionKind(enum.Enum):
    QUERY = "query"
    MUTATION = "mutation"
    ACTION = "action"
    HTTP_ACTION = "httpAction"

    @property
    def title(self) -> str:
        return {"query": "Query", "mutation": "Mutation", "action": "Action"}.get(
            self.value, "HttpAction"
        )


class Visibility(enum.Enum):
    PUBLIC = "public"
    INTERNAL = "internal"


class RegisteredFunction:
    """A query, mutation or action, as registered by a decorator."""

    def __init__(
        self,
        handler: Callable[..., Any],
        kind: FunctionKind,
        visibility: Visibility,
        args: VObject | None,
        returns: Validator | None,
    ) -> None:
        self.handler = handler
        self.kind = kind
        self.visibility = visibility
        self.args = args
        self.returns = returns
        #: set by the loader: the canonical path, e.g. ``"tasks:create"``
        self.path: str | None = None
        self.__name__ = getattr(handler, "__name__", "handler")
        self.__qualname__ = getattr(handler, "__qualname__", self.__name__)
        self.__module__ = getattr(handler, "__module__", __name__)
        self.__doc__ = getattr(handler, "__doc__", None)
        self.__wrapped__ = handler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)

    def __repr__(self) -> str:
        where = self.path or f"{self.__module__}.{self.__qualname__}"
        return f"<{self.visibility.value} {self.kind.value} {where}>"


def _check_handler(handler: Callable[..., Any], kind: FunctionKind, decorator: str) -> None:
    if not callable(handler):
        raise FunctionDefinitionError(f"@{decorator} must decorate a function, got {handler!r}")
    is_async = inspect.iscoroutinefunction(handler)
    name = getattr(handler, "__qualname__", repr(handler))
    if kind in (FunctionKind.QUERY, FunctionKind.MUTATION) and is_async:
        raise FunctionDefinitionError(
            f"{name}: @{decorator} functions must be plain `def`, not `async def`. Queries and "
            "mutations are deterministic transactions; to await I/O, write an @action."
        )
    if kind in (FunctionKind.ACTION, FunctionKind.HTTP_ACTION) and not is_async:
        raise FunctionDefinitionError(
            f"{name}: @{decorator} functions must be `async def` (actions run on the event loop)."
        )


def _args_validator(args: Any, decorator: str) -> VObject | None:
    if args is None:
        return None
    validator = as_validator(args)
    if not isinstance(validator, VObject):
        raise FunctionDefinitionError(
            f"@{decorator}(args=...) takes a dict of validators or a v.object(...), "
            f"got {validator!r}"
        )
    return validator


def _make_decorator(kind: FunctionKind, visibility: Visibility, decorator: str) -> Any:
    @overload
    def register(handler: Callable[..., Any], /) -> RegisteredFunction: ...

    @overload
    def register(
        *, args: Mapping[str, Any] | Validator | None = None, returns: Validator | None = None
    ) -> Callable[[Callable[..., Any]], RegisteredFunction]: ...

    def register(
        handler: Callable[..., Any] | None = None,
        /,
        *,
        args: Mapping[str, Any] | Validator | None = None,
        returns: Validator | None = None,
    ) -> Any:
        args_validator = _args_validator(args, decorator)
        if returns is not None and not isinstance(returns, Validator):
            returns = as_validator(returns)

        def wrap(fn: Callable[..., Any]) -> RegisteredFunction:
            _check_handler(fn, kind, decorator)
            return RegisteredFunction(fn, kind, visibility, args_validator, returns)

        if handler is not None:
            return wrap(handler)
        return wrap

    register.__name__ = decorator
    register.__qualname__ = decorator
    register.__doc__ = (
        f"Register a {visibility.value} {kind.value}. Use bare (`@{decorator}`) or with "
        f"validators (`@{decorator}(args={{...}}, returns=...)`)."
    )
    return register


query = _make_decorator(FunctionKind.QUERY, Visibility.PUBLIC, "query")
mutation = _make_decorator(FunctionKind.MUTATION, Visibility.PUBLIC, "mutation")
action = _make_decorator(FunctionKind.ACTION, Visibility.PUBLIC, "action")
internal_query = _make_decorator(FunctionKind.QUERY, Visibility.INTERNAL, "internal_query")
internal_mutation = _make_decorator(FunctionKind.MUTATION, Visibility.INTERNAL, "internal_mutation")
internal_action = _make_decorator(FunctionKind.ACTION, Visibility.INTERNAL, "internal_action")
