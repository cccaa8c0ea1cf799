"""``haoscar``: the root command. Sub-command modules in this package register themselves.

Every module ``haoscar.cli.<name>`` that defines ``register(app)`` is loaded, so a new command family is one new
module, not an edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer

import haoscar
from haoscar.cli.context import CliContext
from haoscar.cli.groups import bench_app
from haoscar.cli.render import error
from haoscar.errors import UserError
from haoscar.paths import state_dir

app = typer.Typer(
    name="haoscar",
    help="Install and manage a Beowulf cluster and keep its head node highly available (HA-OSCAR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"haoscar {haoscar.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="HAOSCAR_STATE_DIR",
            help="Where haoscar keeps its database, labs and images [default: /var/lib/haoscar].",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    ctx.obj = CliContext(state_dir=state_dir(state))


_SKIP = {"main", "context", "render", "groups"}


def _load_commands() -> None:
    import haoscar.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"haoscar.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    app.add_typer(bench_app, name="bench")


_load_commands()


def run(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one message and exit status 2, never a traceback.

    Typer itself turns usage errors (unknown option, missing argument) into a message and exit status 2.
    """
    try:
        app(args=argv, prog_name="haoscar")
    except UserError as exc:
        error(exc.message)
        for line in exc.details:
            print(line, file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
