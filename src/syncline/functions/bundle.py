"""Deploy bundles: a functions folder packed as a ZIP, checked, stored and unpacked.

``syncline deploy`` packs the project's functions folder (:func:`pack`) and
uploads it; the server reads it back (:func:`read_bundle`), checks that every
module it imports can be found on the server (:func:`missing_imports`),
unpacks it (:func:`unpack`) and loads it like any functions folder. The
bundle is stored in the database next to the schema it brings (globals
:data:`DEPLOYMENT_KEY` and :data:`BUNDLE_KEY`, written in the schema's
commit), so that a restart, another worker or another node serves the same
code (:func:`stored_deployment`, :func:`materialize`).

Layout of the ZIP: ``syncline-bundle.json`` (``{"format": 1, "package":
NAME}``) and the folder's files under ``NAME/``. Packed: every regular file
below the folder except ``__pycache__``, compiled files and names starting
with ``.``. Bounds: the ZIP and its unpacked files each at most the server's
``--max-deploy-size``, and at most :data:`MAX_BUNDLE_FILES` files.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import orjson

from syncline.errors import FunctionDefinitionError, LimitExceeded

if TYPE_CHECKING:
    from syncline.database.database import Database

__all__ = [
    "BUNDLE_KEY",
    "DEFAULT_MAX_DEPLOY_BYTES",
    "DEPLOYMENT_KEY",
    "MAX_BUNDLE_FILES",
    "Bundle",
    "Deployment",
    "MissingImport",
    "materialize",
    "missing_imports",
    "pack",
    "read_bundle",
    "stored_deployment",
    "unpack",
]

#: the global holding the deployed bundle's description (JSON; absent: none deployed)
DEPLOYMENT_KEY = "deployment"
#: the global holding the deployed bundle itself (the ZIP)
BUNDLE_KEY = "deployment_bundle"
#: the largest bundle (and unpacked size) a server accepts (``serve --max-deploy-size``)
DEFAULT_MAX_DEPLOY_BYTES = 32 * 1024**2
#: the most files one bundle may hold
MAX_BUNDLE_FILES = 10_000
MANIFEST = "syncline-bundle.json"
FORMAT = 1
#: a folder holding one unpacked bundle is complete once this file is in it
_COMPLETE = ".complete"


def _packed_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        yield path


def pack(folder: str | Path) -> bytes:
    """The deploy bundle of a functions folder (the ZIP described in the module docstring)."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise FunctionDefinitionError(f"No functions folder at {root}")
    package = root.name
    if not package.isidentifier():
        raise FunctionDefinitionError(
            f"The functions folder name {package!r} is not a valid Python package name"
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _add(archive, MANIFEST, orjson.dumps({"format": FORMAT, "package": package}))
        for path in _packed_files(root):
            _add(archive, f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return out.getvalue()


def _add(archive: zipfile.ZipFile, name: str, content: bytes) -> None:
    """One entry with a fixed date: the same files make the same bundle (and version)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, content)


@dataclass(frozen=True)
class Bundle:
    """An uploaded bundle, checked: its package name and files (relative path -> bytes)."""

    data: bytes
    package: str
    files: dict[str, bytes]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def version(self) -> str:
        """The short name of this bundle: the first 12 hex digits of its SHA-256."""
        return self.sha256[:12]


def _bad(message: str) -> FunctionDefinitionError:
    return FunctionDefinitionError(f"Not a deploy bundle: {message}", code="BadBundle")


def too_large(size: int, limit: int, what: str = "The deploy bundle") -> LimitExceeded:
    return LimitExceeded(
        f"{what} ({size} bytes or more) is larger than the deploy limit of {limit} bytes "
        "(serve --max-deploy-size)",
        code="DeployTooLarge",
    )


def read_bundle(data: bytes, *, max_bytes: int = DEFAULT_MAX_DEPLOY_BYTES) -> Bundle:
    """Check an uploaded bundle and read its files (at most ``max_bytes`` unpacked)."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _bad(f"the upload is not a ZIP file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_BUNDLE_FILES + 1:
            raise LimitExceeded(
                f"The deploy bundle holds {len(infos) - 1} files; at most {MAX_BUNDLE_FILES} "
                "are accepted",
                code="DeployTooLarge",
            )
        declared = sum(info.file_size for info in infos)
        if declared > max_bytes:
            raise too_large(declared, max_bytes, "The unpacked deploy bundle")
        try:
            manifest = orjson.loads(archive.read(MANIFEST))
            package = manifest["package"]
            version = manifest["format"]
        except (KeyError, TypeError, orjson.JSONDecodeError):
            raise _bad(f"{MANIFEST} is missing or malformed") from None
        if version != FORMAT:
            raise _bad(f"format {version!r} (this server reads format {FORMAT})")
        if not isinstance(package, str) or not package.isidentifier():
            raise _bad(f"the package name {package!r} is not a Python identifier")
        files: dict[str, bytes] = {}
        unpacked = 0
        for info in infos:
            if info.filename == MANIFEST or info.is_dir():
                continue
            name = PurePosixPath(info.filename)
            if (
                name.is_absolute()
                or ".." in name.parts
                or len(name.parts) < 2
                or name.parts[0] != package
                or "\\" in info.filename
            ):
                raise _bad(f"the entry {info.filename!r} is not below {package}/")
            with archive.open(info) as member:
                content = member.read(max_bytes - unpacked + 1)
            unpacked += len(content)
            if unpacked > max_bytes:
                raise too_large(unpacked, max_bytes, "The unpacked deploy bundle")
            files[PurePosixPath(*name.parts[1:]).as_posix()] = content
    return Bundle(data, package, files)


# --------------------------------------------------------------------------- imports


@dataclass(frozen=True)
class MissingImport:
    """A module the bundle imports that the server cannot find."""

    module: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} ({self.file}:{self.line})"


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


class _Imports(ast.NodeVisitor):
    """Top-level module names a module imports unconditionally, with their lines.

    Imports inside ``try`` blocks that catch ImportError (optional dependencies)
    and inside ``if TYPE_CHECKING:`` are not required at run time.
    """

    def __init__(self) -> None:
        self.found: list[tuple[str, int]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name.partition(".")[0], node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.append((node.module.partition(".")[0], node.lineno))

    def visit_Try(self, node: ast.Try) -> None:
        if any(_catches_import_error(handler) for handler in node.handlers):
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                self.visit(child)
            return
        self.generic_visit(node)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in _IMPORT_ERRORS for k in kinds)


def _findable(module: str) -> bool:
    if module in sys.builtin_module_names or module in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_imports(bundle: Bundle) -> list[MissingImport]:
    """The modules ``bundle``'s code imports that this Python cannot find (first use each).

    Found without running the code: every ``.py`` file is parsed, and each
    ``import x`` / ``from x import y`` outside an ImportError guard names a
    top-level module that must be importable here. Imports of the bundle's
    own package and modules are the bundle's.
    """
    own = {bundle.package, "__future__"}
    for name in bundle.files:
        first = PurePosixPath(name).parts[0]
        own.add(first.removesuffix(".py"))
    missing: dict[str, MissingImport] = {}
    for name, content in sorted(bundle.files.items()):
        if not name.endswith(".py"):
            continue
        try:
            tree = ast.parse(content, filename=name)
        except (SyntaxError, ValueError):
            continue  # loading the module reports it, with its line
        visitor = _Imports()
        visitor.visit(tree)
        for module, line in visitor.found:
            if module in own or module in missing or _findable(module):
                continue
            missing[module] = MissingImport(module, f"{bundle.package}/{name}", line)
    return list(missing.values())


# --------------------------------------------------------------------------- unpacking


def unpack(bundle: Bundle, folder: Path) -> Path:
    """Write the bundle's files to ``folder/PACKAGE``; that functions folder.

    A folder already holding this bundle completely is used as it is (its
    files may be imported by the code serving now).
    """
    root = folder / bundle.package
    marker = folder / _COMPLETE
    if marker.exists():
        return root
    if folder.exists():
        shutil.rmtree(folder)  # a half-written folder of an earlier attempt
    root.mkdir(parents=True)
    for name, content in bundle.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    marker.write_bytes(bundle.sha256.encode())
    return root


def discard(folder: Path, keep: set[str]) -> None:
    """Remove the unpacked bundles in ``folder`` other than those named in ``keep``."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


# --------------------------------------------------------------------------- the stored deployment


@dataclass(frozen=True)
class Deployment:
    """The bundle stored in a database: its description and the bundle."""

    #: the stored description, as stored (processes compare it to notice a new deploy)
    raw: bytes
    bundle: Bundle

    @property
    def info(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.raw)
        return parsed

    @property
    def deployed_at(self) -> str:
        ms = self.info.get("deployedAt", 0)
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def describe(bundle: Bundle, *, now_ms: int, functions: int) -> bytes:
    """The stored description of a bundle deployed now."""
    return orjson.dumps(
        {
            "version": bundle.version,
            "sha256": bundle.sha256,
            "package": bundle.package,
            "bytes": len(bundle.data),
            "functions": functions,
            "deployedAt": now_ms,
        }
    )


def stored_description(database: Database) -> bytes | None:
    """The description of the deployed bundle, as stored (None: nothing deployed)."""
    conn = database.persistence.reader()
    try:
        return conn.get_global(DEPLOYMENT_KEY) or None
    finally:
        database.persistence.release_reader(conn)


def stored_deployment(database: Database) -> Deployment | None:
    """The bundle deployed to ``database`` (None: nothing was deployed)."""
    conn = database.persistence.reader()
    try:
        raw = conn.get_global(DEPLOYMENT_KEY)
        data = conn.get_global(BUNDLE_KEY) if raw else None
    finally:
        database.persistence.release_reader(conn)
    if not raw or not data:
        return None
    # Accepted once: read it back with no size limit (the server's may have shrunk since).
    return Deployment(raw, read_bundle(data, max_bytes=max(len(data) * 1024, 1 << 30)))


def materialize(deployment: Deployment, folder: Path) -> Path:
    """Unpack the stored bundle into ``folder/VERSION``; the functions folder to load."""
    return unpack(deployment.bundle, folder / deployment.bundle.version)
