"""Function paths and references.

A function's path is ``"<module path>:<name>"`` where the module path is the
file's path inside the functions folder, ``/``-separated, without ``.py``:
``functions/admin/users.py:get`` is ``"admin/users:get"``.

References, interchangeable wherever a function is named:

* ``api.tasks.list`` / ``internal.admin.users.get`` (dynamic: no codegen);
* the decorated function object itself (once the loader has given it a path);
* the string ``"tasks:list"``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import lru_cache
from typing import Any

from syncline.errors import InvalidRequest

_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@lru_cache(maxsize=4096)
def _canonical(path: str) -> str:
    """Canonical ``module:function`` form of a path.

    Splits on the last ``:``; a missing function name means ``default``; a
    ``.js`` (or ``.py``) suffix on the module is dropped (the Rust client sends
    ``tasks.js:list`` after reconnecting).
    """
    if not isinstance(path, str) or not path:
        raise InvalidRequest(f"Invalid function path {path!r}", code="InvalidFunctionPath")
    module, sep, name = path.rpartition(":")
    if not sep:
        module, name = path, "default"
    for suffix in (".js", ".py"):
        if module.endswith(suffix):
            module = module[: -len(suffix)]
    module = module.strip("/")
    parts = module.split("/") if module else []
    if (
        not parts
        or not all(_COMPONENT.match(p) and any(c.isalnum() for c in p) for p in parts)
        or not _IDENTIFIER.match(name)
        or set(name) == {"_"}
    ):
        raise InvalidRequest(
            f"Invalid function path {path!r}: expected 'module/path:functionName'",
            code="InvalidFunctionPath",
        )
    return f"{module}:{name}"


def canonicalize_path(path: str) -> str:
    """Canonical ``module:function`` form of a path sent by a client (see ``_canonical``)."""
    if not isinstance(path, str) or not path:
        raise InvalidRequest(f"Invalid function path {path!r}", code="InvalidFunctionPath")
    return _canonical(path)


def _dotted_guess(path: str) -> str | None:
    """``tasks.add`` -> ``tasks:add``, ``admin.users.get`` -> ``admin/users:get``."""
    if ":" in path or "." not in path:
        return None
    *modules, name = path.removesuffix(".js").removesuffix(".py").split(".")
    if not modules or not all(modules) or not name:
        return None
    return f"{'/'.join(modules)}:{name}"


def suggest_path(path: str, known: Collection[str]) -> str | None:
    """The function in ``known`` (canonical paths) a caller of ``path`` most likely meant.

    A dotted path (``tasks.add``, the JavaScript spelling) maps to ``tasks:add``;
    otherwise the closest path by spelling, if it is close. None when nothing is.
    """
    # `tasks.add` reaches here as written, or canonical: `tasks.add:default`.
    guess = _dotted_guess(path.strip("/").removesuffix(":default"))
    if guess is not None and guess in known:
        return guess
    target = guess or path
    import difflib  # only for a path that does not exist: not loaded with every server

    matches = difflib.get_close_matches(target, list(known), n=1, cutoff=0.75)
    return matches[0] if matches else None


class FunctionReference:
    """``api.a.b.c`` is the reference to ``"a/b:c"``. Attribute access extends it."""

    __slots__ = ("_internal", "_segments")

    def __init__(self, segments: tuple[str, ...], internal: bool) -> None:
        self._segments = segments
        self._internal = internal

    def __getattr__(self, name: str) -> FunctionReference:
        if name.startswith("__"):
            raise AttributeError(name)
        return FunctionReference((*self._segments, name), self._internal)

    @property
    def path(self) -> str:
        if len(self._segments) < 2:
            raise InvalidRequest(
                f"{self!r} is not a function reference: use api.<module>.<function>",
                code="InvalidFunctionPath",
            )
        module = "/".join(self._segments[:-1])
        return f"{module}:{self._segments[-1]}"

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        root = "internal" if self._internal else "api"
        return ".".join((root, *self._segments))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionReference) and other._segments == self._segments

    def __hash__(self) -> int:
        return hash(self._segments)


api = FunctionReference((), internal=False)
internal = FunctionReference((), internal=True)


def function_path(ref: Any) -> str:
    """The canonical path named by any kind of function reference."""
    if isinstance(ref, FunctionReference):
        return canonicalize_path(ref.path)
    if isinstance(ref, str):
        return canonicalize_path(ref)
    path = getattr(ref, "path", None)
    if isinstance(path, str):
        return path
    if getattr(ref, "kind", None) is not None:
        raise InvalidRequest(
            f"{ref!r} has no path yet: it was not loaded from the functions folder",
            code="InvalidFunctionPath",
        )
    raise InvalidRequest(
        f"Expected a function reference (api.module.fn, a function, or 'module:fn'), got {ref!r}",
        code="InvalidFunctionPath",
    )
