"""What every ``syncline`` command prints the same way: errors, warnings and JSON."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
import orjson

__all__ = ["dumps", "fail", "warn"]


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 1."""
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    click.echo(click.style("warning: ", fg="yellow", bold=True) + message, err=True)


def dumps(value: Any, *, pretty: bool) -> str:
    """``value`` as JSON text: indented by two spaces, or on one line."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0).decode()
