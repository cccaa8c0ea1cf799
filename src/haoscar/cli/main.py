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
from haoscar.cli.render import error, user_error
from haoscar.errors import UserError
from haoscar.paths import state_dir

_app = typer.Typer(
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


@_app.callback()
def _root(
    ctx: typer.Context,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="HAOSCAR_STATE_DIR",
            help="Where haoscar keeps its database, labs and images (default: /var/lib/haoscar).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    ctx.obj = CliContext(state_dir=state_dir(state))
    # The database the command opened (if any) is closed when the command ends, whatever its outcome.
    ctx.call_on_close(ctx.obj.env.close)


_SKIP = {"main", "context", "render", "groups"}

# Top-level command -> the CLI modules that provide it. Loading only what a command needs keeps the start-up of
# `haoscar lab status` short, since the modules pull in SQLAlchemy, aiohttp and pyroute2. A command missing here
# still works (everything is loaded); tests/unit/cli/test_command_map.py keeps the map true.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "spec": ("spec", "apply"),
    "db": ("db",),
    "node": ("node",),
    "standby": ("standby",),
    "image": ("image",),
    "mac": ("mac",),
    "netboot": ("netboot", "install"),  # install.py adds `netboot build-installer`
    "dhcp": ("dhcp",),
    "install": ("install",),
    "lab": ("lab",),
    "demo": ("demo",),
    "ha": ("ha",),
    "witness": ("witness",),
    "repl": ("repl",),
    "keys": ("keys",),
    "slurm": ("slurm",),
    "exec": ("exec",),
    "copy": ("exec",),
    "groups": ("exec",),
    "cluster": ("cluster", "user"),  # user.py adds `cluster sync`
    "user": ("user",),
    "pkg": ("pkg",),
    "web": ("web",),
}

_loaded: set[str] = set()  # CLI modules registered so far ("bench" once the bench group is added)


def _all_modules() -> list[str]:
    import haoscar.cli as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    return [name for name in names if name not in _SKIP and not name.startswith("_")]


def load_commands(modules: tuple[str, ...] | None = None) -> typer.Typer:
    """Register the given CLI modules (all of them when None) on the root app, each once."""
    for name in _all_modules() if modules is None else modules:
        if name in _loaded:
            continue
        _loaded.add(name)
        module = importlib.import_module(f"haoscar.cli.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(_app)
    if "bench" not in _loaded:
        _loaded.add("bench")
        _app.add_typer(bench_app, name="bench")
    return _app


def _command_of(argv: list[str]) -> str | None:
    """The top-level command in ``argv``: the first word that is not a global option or its value."""
    skip_next = False
    for word in argv:
        if skip_next:
            skip_next = False
        elif word == "--state-dir":
            skip_next = True
        elif not word.startswith("-"):
            return word
    return None


def __getattr__(name: str) -> typer.Typer:
    # `from haoscar.cli.main import app` (tests, typer.testing) gets the app with every command.
    if name == "app":
        return load_commands()
    raise AttributeError(name)


def run(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one message and exit status 2, never a traceback.

    Typer itself turns usage errors (unknown option, missing argument) into a message and exit status 2.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        load_commands(COMMAND_MODULES.get(_command_of(args) or ""))
        _app(args=args, prog_name="haoscar")
    except UserError as exc:
        user_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
