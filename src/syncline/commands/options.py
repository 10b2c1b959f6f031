"""Options that several ``syncline`` commands share, defined once.

Each is a click decorator; ``click.option`` makes a fresh option object every
time one is applied, so the same decorator can go on any number of commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

project_option = click.option(
    "--dir",
    "project",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Project folder (holds functions/ and .syncline/).",
)

db_option = click.option(
    "--db",
    help="The project's database URL, if not the default PROJECT/.syncline/data.sqlite3 "
    "(sqlite:///relative.db or sqlite:////absolute/path.db); its folder is the data folder.",
)

functions_option = click.option(
    "--functions",
    type=click.Path(file_okay=False, path_type=Path),
    help="Functions folder (default: PROJECT/functions).",
)

url_option = click.option(
    "--url",
    envvar="SYNCLINE_URL",
    help="Talk to the server at this URL (default: the server running on the project's "
    "data folder). Env: SYNCLINE_URL.",
)

admin_key_option = click.option(
    "--admin-key",
    envvar="SYNCLINE_ADMIN_KEY",
    help="The server's admin key (default: read from the project's data folder). "
    "Env: SYNCLINE_ADMIN_KEY.",
)


durability_option = click.option(
    "--durability",
    type=click.Choice(["full", "normal"]),
    default="full",
    show_default=True,
    envvar="SYNCLINE_DURABILITY",
    help="full: every acknowledged commit survives power loss (one fsync per group "
    "commit). normal: faster commits; the last ones may be lost on power loss or an OS "
    "crash, never on a process crash. Env: SYNCLINE_DURABILITY.",
)


def combine(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``decorators`` so they list in the given order in --help."""

    def apply(fn: F) -> F:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply
