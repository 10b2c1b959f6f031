"""Syncline: a self-hosted reactive backend for Python.

What a functions module imports::

    from syncline import query, mutation, action, v, ConvexError, api, internal

Importing this package is cheap: it loads no server, database or CLI code.
"""

from syncline.__about__ import __version__
from syncline.errors import ConvexError, SynclineError
from syncline.functions.crons import CronJobs
from syncline.functions.http.cors import cors_headers
from syncline.functions.http.request import HttpRequest
from syncline.functions.http.response import HttpResponse
from syncline.functions.http.router import HttpRouter, http_action
from syncline.functions.paths import api, internal
from syncline.functions.registration import (
    action,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)
from syncline.schema import define_schema, define_table
from syncline.values.types import UNDEFINED, Int64
from syncline.values.validators import pagination_opts_validator, v

__all__ = [
    "UNDEFINED",
    "AsyncClient",
    "Client",
    "ConvexError",
    "CronJobs",
    "HttpRequest",
    "HttpResponse",
    "HttpRouter",
    "Int64",
    "SynclineError",
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


def __getattr__(name: str) -> object:
    # The clients pull in websockets; load them only when asked for.
    if name in ("Client", "AsyncClient"):
        from syncline import client

        return getattr(client, name)
    raise AttributeError(f"module 'syncline' has no attribute {name!r}")
