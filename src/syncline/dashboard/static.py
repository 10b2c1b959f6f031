"""Which file of the built UI answers a ``/dashboard/...`` path, and how it may be cached.

The UI is a single-page app built by Vite with ``base: "/dashboard/"``:
``assets/`` holds content-hashed files (cached for good), and every other
path is a route of the app, answered with ``index.html`` (never cached, so a
new build is picked up at once). The files hold no data: they need no key.
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
    not be answered with HTML); anything else is ``index.html``. Paths never
    leave ``root``.
    """
    route = route.lstrip("/")
    if route.startswith("assets/"):
        base = (root / "assets").resolve()
        candidate = (root / route).resolve()
        if not candidate.is_relative_to(base) or not candidate.is_file():
            return None
        return StaticFile(candidate, ASSETS_CACHE)
    index = root / "index.html"
    if not index.is_file():
        return None
    return StaticFile(index, INDEX_CACHE)
