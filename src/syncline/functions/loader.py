"""Load a functions folder into a :class:`FunctionRegistry`.

The folder is imported as a package named after it (``functions`` by default),
so user modules can import each other (``from functions.lib import helper`` or
``from .lib import helper``) and need no ``__init__.py``. Every ``.py`` file
below it is imported; each :class:`RegisteredFunction` *defined* in a module
is registered under ``"<module path>:<attribute name>"``.

Special modules, imported but never callable: ``schema.py`` (``schema``),
``crons.py`` (``crons``), ``http.py`` (``http``), ``auth_config.py``
(``providers``). Folders and files starting with ``_`` or ``.`` are skipped.

Loading again (hot reload) first forgets the previously imported modules of
the package, so the new registry sees the new code only. User modules are
always compiled from source: cached bytecode is validated by whole-second
mtime and size, so an edit saved within a second of the previous load could
otherwise run stale code.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncline.errors import FunctionDefinitionError, FunctionNotFound, SchemaDefinitionError
from syncline.functions.paths import canonicalize_path, suggest_path
from syncline.functions.registration import FunctionKind, RegisteredFunction, Visibility
from syncline.values.validators import VDoc, VObject, walk

SPECIAL_MODULES = ("schema", "crons", "http", "auth_config")


@dataclass
class FunctionRegistry:
    """Everything found in one load of a functions folder."""

    functions: dict[str, RegisteredFunction] = field(default_factory=dict)
    schema: Any = None
    crons: Any = None
    http: Any = None
    auth_providers: list[Any] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)

    def get(self, path: str) -> RegisteredFunction | None:
        return self.functions.get(path)

    def resolve(
        self, path: str, *, kind: FunctionKind | None = None, allow_internal: bool = False
    ) -> RegisteredFunction:
        """The function at ``path``, as a caller with these rights may see it.

        A missing function and an internal one called without the right give
        the same error, so clients cannot probe for internal functions.
        """
        canonical = canonicalize_path(path)
        fn = self.functions.get(canonical)
        if fn is None or (fn.visibility is Visibility.INTERNAL and not allow_internal):
            hint = self._did_you_mean(path, allow_internal=allow_internal)
            if allow_internal:
                raise FunctionNotFound(f"Could not find function for '{canonical}'{hint}")
            raise FunctionNotFound(f"Could not find public function for '{canonical}'{hint}")
        check_kind(fn, canonical, kind)
        return fn

    def _did_you_mean(self, path: str, *, allow_internal: bool) -> str:
        """`` Did you mean `tasks:add`?`` for a near miss among the functions the caller sees."""
        visible = [
            p
            for p, fn in self.functions.items()
            if fn.kind is not FunctionKind.HTTP_ACTION
            and (allow_internal or fn.visibility is Visibility.PUBLIC)
        ]
        match = suggest_path(path, visible)
        return "" if match is None else f". Did you mean `{match}`?"


def check_kind(fn: RegisteredFunction, canonical: str, kind: FunctionKind | None) -> None:
    """Refuse to run ``fn`` (at ``canonical``) as another ``kind`` than its own (None: any)."""
    if kind is not None and fn.kind is not kind:
        raise FunctionNotFound(
            f"Trying to execute {canonical} as {kind.title}, but it is defined as {fn.kind.title}.",
            code="WrongFunctionKind",
        )


def _module_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "_")) for part in rel.parts[:-1]):
            continue
        if rel.name.startswith(".") or (rel.name.startswith("_") and rel.name != "__init__.py"):
            continue
        yield path


def _forget_package(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time, never reading or writing cached bytecode."""

    def get_code(self, fullname: str) -> types.CodeType:
        return self.source_to_code(self.get_data(self.path), self.path)


def _use_source_loader(root: Path) -> None:
    """Make imports below ``root`` (the package and its subfolders) use :class:`_SourceLoader`."""
    loaders = [(_SourceLoader, importlib.machinery.SOURCE_SUFFIXES)]
    for directory in (root, *(p for p in root.rglob("*") if p.is_dir())):
        if directory.name != "__pycache__":
            sys.path_importer_cache[str(directory)] = importlib.machinery.FileFinder(
                str(directory), *loaders
            )


def _install_package(root: Path, package: str) -> None:
    _use_source_loader(root)
    # `logging.getLogger(__name__)` in a user module is a child of this logger. Let
    # every level through (the sandbox captures them all as log lines, as Convex
    # does for console.debug/info) unless the user chose a level themselves.
    package_logger = logging.getLogger(package)
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.DEBUG)
    init = root / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            package,
            init,
            loader=_SourceLoader(package, str(init)),
            submodule_search_locations=[str(root)],
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    else:
        module = types.ModuleType(package)
        module.__path__ = [str(root)]
        module.__file__ = None
        module.__package__ = package
        sys.modules[package] = module
    # So that absolute imports of the package work from inside user modules.
    parent = str(root.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)


def load_functions(root: str | Path, *, package: str | None = None) -> FunctionRegistry:
    """Import every module under ``root`` and collect its functions.

    Raises FunctionDefinitionError naming the module (and the original
    traceback) if any module fails to import or defines something invalid.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FunctionDefinitionError(f"Functions folder {root} does not exist")
    package = package or root.name
    if not package.isidentifier():
        raise FunctionDefinitionError(
            f"The functions folder name {package!r} is not a valid Python package name"
        )
    importlib.invalidate_caches()
    _forget_package(package)
    registry = FunctionRegistry()
    try:
        _install_package(root, package)
        for path in _module_files(root):
            rel = path.relative_to(root).with_suffix("")
            if rel.name == "__init__":
                continue
            module_path = "/".join(rel.parts)
            dotted = ".".join((package, *rel.parts))
            try:
                module = importlib.import_module(dotted)
            except FunctionDefinitionError as exc:
                raise FunctionDefinitionError(
                    f"Error in functions/{module_path}.py: {exc}"
                ) from exc
            except BaseException as exc:
                raise FunctionDefinitionError(
                    f"Failed to import functions/{module_path}.py: "
                    f"{type(exc).__name__}: {exc}\n{_user_traceback(exc)}"
                ) from exc
            registry.modules.append(module_path)
            if module_path in SPECIAL_MODULES:
                _collect_special(registry, module_path, module)
                continue
            _collect_functions(registry, module_path, module)
        _bind_documents(registry)
    except BaseException:
        _forget_package(package)
        raise
    return registry


def _bind_documents(registry: FunctionRegistry) -> None:
    """Bind every ``v.doc(table)`` in functions' args and returns to the schema's table.

    A table the schema lacks (or no schema at all) fails the load, naming the function.
    """
    from syncline.schema import Schema

    for path, fn in registry.functions.items():
        uses = [
            node
            for validator in (fn.args, fn.returns)
            if validator is not None
            for node in walk(validator)
            if isinstance(node, VDoc)
        ]
        if not uses:
            continue
        module = path.rpartition(":")[0]
        schema = registry.schema
        if not isinstance(schema, Schema):
            raise FunctionDefinitionError(
                f"Error in functions/{module}.py: {path} uses {uses[0]!r}, which needs the "
                f"table defined in functions/schema.py"
            )
        try:
            if fn.args is not None:
                args = schema.bind_documents(fn.args)
                assert isinstance(args, VObject)  # substitute keeps an object an object
                fn.args = args
            if fn.returns is not None:
                fn.returns = schema.bind_documents(fn.returns)
        except SchemaDefinitionError as exc:
            raise FunctionDefinitionError(f"Error in functions/{module}.py: {path}: {exc}") from exc


def _user_traceback(exc: BaseException) -> str:
    """The traceback of an import failure, without the import machinery's frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen")
        and "/syncline/" not in frame.filename
        and "/importlib/" not in frame.filename
    ]
    lines = traceback.format_list(frames)
    if isinstance(exc, SyntaxError):
        lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _collect_functions(registry: FunctionRegistry, module_path: str, module: Any) -> None:
    for name, value in vars(module).items():
        if not isinstance(value, RegisteredFunction) or name.startswith("_"):
            continue
        if value.__module__ != module.__name__:
            continue  # imported from another module: registered there
        if value.path is not None and value.path != f"{module_path}:{name}":
            continue  # an alias of a function registered under another name
        path = f"{module_path}:{name}"
        value.path = path
        registry.functions[path] = value


def _collect_special(registry: FunctionRegistry, module_path: str, module: Any) -> None:
    if module_path == "schema":
        from syncline.schema import Schema

        schema = getattr(module, "schema", None)
        if schema is None:
            schema = getattr(module, "default", None)
        if schema is not None and not isinstance(schema, Schema):
            raise FunctionDefinitionError(
                "functions/schema.py: `schema` must be the result of define_schema({...}), "
                f"got {type(schema).__name__}"
            )
        registry.schema = schema
    elif module_path == "crons":
        registry.crons = getattr(module, "crons", None)
    elif module_path == "http":
        from syncline.functions.http.router import HttpRouter

        router = getattr(module, "http", None)
        if router is not None and not isinstance(router, HttpRouter):
            raise FunctionDefinitionError(
                "functions/http.py: `http` must be an HttpRouter() (from syncline import "
                f"HttpRouter), got {type(router).__name__}"
            )
        registry.http = router
    elif module_path == "auth_config":
        providers = getattr(module, "providers", [])
        if not isinstance(providers, list | tuple):
            raise FunctionDefinitionError(
                "functions/auth_config.py: `providers` must be a list of provider dicts"
            )
        registry.auth_providers = list(providers)
