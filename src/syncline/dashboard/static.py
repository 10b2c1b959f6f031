"""Which file of the built UI answers a ``/dashboard/...`` path, and how it may be cached.

The UI is a single-page app built by Vite with ``base: "/dashboard/"``:
``assets/`` holds content-hashed files (cached for good), the top folder
a few files of fixed names (``index.html``, a favicon), and every other path
is a route of the app, answered with ``index.html``. Files of fixed names are
revalidated on every use (``no-cache``), so a new build is picked up at once. The files hold no data: they need no key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASSETS_CACHE", "INDEX_CACHE", "STATIC_DIR", "StaticFile", "resolve"]

#: the built UI shipped in the package
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_CACHE = "public, max-age=31536000, immutable"
INDEX_CACHE = "no-cache"


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path
    cache_control: str


def resolve(root: Path, route: str) -> StaticFile | None:
    """The file for ``route`` (the path after ``/dashboard/``); None: 404.

    A path under ``assets/`` is that file or nothing (a missing asset must
    not be answered with HTML). Another path is the file of that name at the
    top of ``root`` (what Vite copies from ``public/``, a favicon say), else
    ``index.html``. Paths never leave ``root``.
    """
    route = route.lstrip("/")
    base = root.resolve()
    if route.startswith("assets/"):
        candidate = (root / route).resolve()
        if not candidate.is_relative_to(base / "assets") or not candidate.is_file():
            return None
        return StaticFile(candidate, ASSETS_CACHE)
    if route:
        candidate = (root / route).resolve()
        if candidate.is_relative_to(base) and candidate.is_file():
            return StaticFile(candidate, INDEX_CACHE)
    index = root / "index.html"
    if not index.is_file():
        return None
    return StaticFile(index, INDEX_CACHE)
