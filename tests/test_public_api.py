"""The public surface is pinned: ``syncline.__all__`` is exactly the documented names.

Adding or removing a public name is a decision: change :data:`PUBLIC_NAMES`
here and document the name in ``docs/reference/`` in the same change.
"""

from __future__ import annotations

import importlib
import re

import syncline
from test_docs import code_text, reference_pages

#: every name of ``syncline.__all__``, sorted (documented in docs/reference/)
PUBLIC_NAMES = [
    "AsyncClient",
    "Client",
    "ConvexError",
    "CronJobs",
    "HttpRequest",
    "HttpResponse",
    "HttpRouter",
    "Int64",
    "SynclineError",
    "UNDEFINED",
    "__version__",
    "action",
    "api",
    "cors_headers",
    "define_schema",
    "define_table",
    "http_action",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "pagination_opts_validator",
    "query",
    "v",
]


def test_all_is_exactly_the_pinned_public_names() -> None:
    assert sorted(PUBLIC_NAMES) == PUBLIC_NAMES, "keep PUBLIC_NAMES sorted"
    assert len(syncline.__all__) == len(set(syncline.__all__)), "duplicates in __all__"
    added = sorted(set(syncline.__all__) - set(PUBLIC_NAMES))
    removed = sorted(set(PUBLIC_NAMES) - set(syncline.__all__))
    assert not added and not removed, (
        f"syncline.__all__ changed: added {added}, removed {removed} "
        "(a public API change: update PUBLIC_NAMES and docs/reference/)"
    )


def test_every_public_name_is_importable() -> None:
    module = importlib.import_module("syncline")
    for name in PUBLIC_NAMES:
        assert hasattr(module, name), f"`from syncline import {name}` fails"
    namespace: dict[str, object] = {}
    exec("from syncline import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_NAMES


def test_every_public_name_is_documented() -> None:
    code = code_text(reference_pages())
    undocumented = [n for n in PUBLIC_NAMES if not re.search(rf"\b{re.escape(n)}\b", code)]
    assert not undocumented, f"public names missing from docs/reference/*.md: {undocumented}"
