"""``syncline codegen``: TypeScript types and the ``api`` object for front ends.

Loads the project's functions folder (imports its modules, as ``syncline
dev`` does; no database is opened) and writes the files of
:func:`syncline.codegen.generate` into the output folder, by default
``PROJECT/convex/_generated`` — the place Convex's own codegen uses, so that
a front end at ``PROJECT/src/`` imports ``api`` with
``import { api } from "../convex/_generated/api"`` exactly as in a Convex
project. Files whose content did not change are not rewritten (file
watchers and bundlers see no change).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncline.commands.console import fail
from syncline.commands.options import combine, functions_option, project_option
from syncline.errors import SynclineError

if TYPE_CHECKING:
    from syncline.application import Application
    from syncline.functions.loader import FunctionRegistry

__all__ = ["DEFAULT_OUT", "codegen", "regenerate", "types_writer", "write_generated"]

#: the output folder, relative to the project folder
DEFAULT_OUT = Path("convex") / "_generated"


def regenerate(registry: FunctionRegistry, out: Path) -> list[Path]:
    """Generate the TypeScript for a loaded registry into ``out``; the paths that changed.

    Raises SynclineError (CodegenError) or OSError.
    """
    from syncline.codegen import generate

    return write_generated(generate(registry.functions, registry.schema), out)


def types_writer(app: Application, out: Path, echo: Callable[[str], None]) -> Callable[[], None]:
    """For ``syncline dev --codegen-out``: a function writing the served code's types to ``out``.

    It prints which files changed; a failure (names that collide in `api`, a
    folder it cannot write) is printed and the dev server keeps serving.
    """

    def write() -> None:
        try:
            changed = regenerate(app.registry, out)
        except (SynclineError, OSError) as exc:
            echo(click.style(f"TypeScript types not updated in {out}: {exc}", fg="red"))
            return
        if changed:
            names = ", ".join(path.name for path in changed)
            echo(click.style("Types updated", fg="green") + f" in {out} ({names})")

    return write


def write_generated(files: dict[str, str], out: Path) -> list[Path]:
    """Write ``{file name: text}`` into ``out`` (created if needed); the paths that changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = out / name
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        changed.append(path)
    return changed


@click.command()
@combine(project_option, functions_option)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: PROJECT/convex/_generated).",
)
def codegen(project: Path, functions: Path | None, out: Path | None) -> None:
    """Write TypeScript for front ends: typed `api`/`internal` and the data model.

    Writes api.js (the `api` and `internal` objects: `anyApi` of the npm
    `convex` package), api.d.ts (every function as a typed
    FunctionReference<kind, visibility, Args, Return>, from its `args` and
    `returns` validators) and dataModel.d.ts (Doc<"table">, Id<"table">,
    DataModel, from functions/schema.py). A React app then type-checks
    `useQuery(api.messages.list, {channel: "x"})`. Run it again after
    changing functions or the schema, or let `syncline dev --codegen-out`
    (or codegen-out in the project file) do it on every change.

    \b
    Examples:
      syncline codegen
      syncline codegen --dir myapp
      syncline codegen --dir myapp --out myapp/web/src/convex/_generated
    """
    from syncline.application import Paths
    from syncline.functions.loader import load_functions

    paths = Paths.for_project(project, functions)
    target = out if out is not None else paths.project / DEFAULT_OUT
    try:
        registry = load_functions(paths.functions)
        changed = regenerate(registry, target)
    except SynclineError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"Cannot write to {target}: {exc}")
    count = sum(1 for fn in registry.functions.values() if fn.kind.value != "httpAction")
    tables = len(registry.schema.tables) if registry.schema is not None else 0
    state = f"{len(changed)} file(s) updated" if changed else "already up to date"
    click.echo(
        f"Generated TypeScript for {count} functions and {tables} tables in {target} ({state})"
    )
