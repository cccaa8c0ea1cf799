"""``haoscar web serve|admin|audit``: the web console (docs/web.md).

A password is read from a file (``--password-file``) or standard input, never from the command line (where ``ps``
and the shell's history would show it). Text that came from the network (names typed at the login form, form
fields in the audit log) passes through ``wire_text`` before it reaches the terminal.
"""

from __future__ import annotations

import getpass
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, err_console, flags, print_json, table, warn
from haoscar.cli.wire_text import wire_text
from haoscar.errors import FieldError

web_app = typer.Typer(help="The web console: serve it, its administrators, its audit log.", no_args_is_help=True)
admin_app = typer.Typer(
    help="The console's administrators (stored hashed in the cluster database).", no_args_is_help=True
)
web_app.add_typer(admin_app, name="admin")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The administrator's login name.")]
PasswordFile = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the password from the first line of this file (default: stdin)."),
]
_PASSWORD_WORDS = {"name": "NAME", "password": "password"}
# WebSettings' defaults (not imported here: `web admin` need not load aiohttp); a unit test keeps them equal.
SESSION_TTL_S = 8 * 3600.0
IDLE_TTL_S = 30 * 60.0


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def read_password(path: Path | None) -> str:
    """The password from ``path``'s first line, else from stdin (asked twice on a terminal)."""
    if path is not None:
        try:
            return path.read_text().split("\n", 1)[0]
        except OSError as exc:
            raise FieldError("password_file", f"cannot read {path}: {exc.strerror}") from None
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise FieldError("password", "the two passwords differ; nothing was changed")
        return first
    return sys.stdin.readline().rstrip("\n")


@web_app.command("serve")
def serve(
    ctx: typer.Context,
    *,
    bind: Annotated[str, typer.Option("--bind", help="The address to listen on (the public alias).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The HTTPS port.")] = 8443,
    cert_address: Annotated[
        list[str] | None, typer.Option("--cert-address", help="Another address the certificate must name.")
    ] = None,
    tls_dir: Annotated[Path, typer.Option("--tls-dir", help="The cluster CA's directory.")] = Path("/etc/haoscar/tls"),
    console_dir: Annotated[
        Path, typer.Option("--console-dir", help="Where the console's certificate and key are kept.")
    ] = Path("/etc/haoscar/web"),
    session_ttl: Annotated[
        float, typer.Option("--session-ttl", help="Seconds a login lasts at most (absolute expiry).")
    ] = SESSION_TTL_S,
    idle_ttl: Annotated[
        float, typer.Option("--idle-ttl", help="Seconds without a request that end a session (idle expiry).")
    ] = IDLE_TTL_S,
) -> None:
    """Serve the console over HTTPS (certificate signed by the cluster CA) until SIGTERM or Ctrl-C."""
    import asyncio
    import logging

    from haoscar.commands.web_tls import ConsoleCert, ensure_console_cert
    from haoscar.tlsca import server_context
    from haoscar.web.context import WebSettings, web_context
    from haoscar.web.server import serve as serve_console

    env = cli_env(ctx)
    if not 1 <= port <= 65535:
        raise FieldError("port", f"{port} is not a TCP port (1-65535)")
    for field, seconds in (("session_ttl", session_ttl), ("idle_ttl", idle_ttl)):
        if not 1 <= seconds <= 30 * 86400:
            raise FieldError(field, f"{seconds:g} is out of range; give between 1 and 2592000 seconds")
    with flags(addresses="--cert-address"):
        made = ensure_console_cert(env, ConsoleCert(tls_dir, console_dir, bind, tuple(cert_address or ())))
    from haoscar.commands.web_admins import admin_list

    if not admin_list(env):
        warn("no administrator yet: nobody can log in until `haoscar web admin add NAME` makes one")
    if made.issued:
        err_console.print(f"issued the console's certificate {made.cert} for {', '.join(made.addresses)}")
    settings = replace(
        WebSettings(), bind=bind, port=port, tls_dir=tls_dir, console_dir=console_dir,
        session_ttl_s=session_ttl, idle_ttl_s=idle_ttl,
    )  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def ready(url: str) -> None:
        console.print(f"serving the haoscar console at {url}", highlight=False, soft_wrap=True)
        sys.stdout.flush()

    try:
        asyncio.run(serve_console(web_context(env.state_dir, settings), server_context(made.files()), ready))
    except OSError as exc:
        raise FieldError("bind", f"cannot listen on {bind}:{port}: {exc.strerror}") from None


@admin_app.command("add")
def admin_add_(ctx: typer.Context, name: NameArgument, password_file: PasswordFile = None) -> None:
    """Add an administrator; the password comes from --password-file or stdin."""
    from haoscar.commands.web_admins import AdminAdd, admin_add

    with flags(**_PASSWORD_WORDS):
        row = admin_add(cli_env(ctx), AdminAdd(name, read_password(password_file)))
    console.print(f"added administrator {row.name} ({row.scheme})", highlight=False)


@admin_app.command("passwd")
def admin_passwd_(ctx: typer.Context, name: NameArgument, password_file: PasswordFile = None) -> None:
    """Change an administrator's password (its sessions end)."""
    from haoscar.commands.web_admins import AdminPasswd, admin_passwd

    with flags(**_PASSWORD_WORDS):
        row = admin_passwd(cli_env(ctx), AdminPasswd(name, read_password(password_file)))
    console.print(f"changed the password of {row.name}; its sessions ended", highlight=False)


@admin_app.command("delete")
def admin_delete_(ctx: typer.Context, name: NameArgument) -> None:
    """Delete an administrator (its sessions end; the audit log keeps its entries)."""
    from haoscar.commands.web_admins import AdminDelete, admin_delete

    with flags(**_PASSWORD_WORDS):
        admin_delete(cli_env(ctx), AdminDelete(name))
    console.print(f"deleted administrator {name}", highlight=False)


@admin_app.command("list")
def admin_list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The administrators, when they were made and their password last changed, their open sessions."""
    from haoscar.commands.web_admins import admin_list

    rows = admin_list(cli_env(ctx))
    if as_json:
        print_json([row.as_dict() for row in rows])
        return
    cells = [(r.name, _when(r.created_s), _when(r.changed_s), str(r.sessions), r.scheme) for r in rows]
    columns = ["name", "created", "password changed", "sessions", "hash"]
    console.print(table(f"{len(rows)} administrators", columns, cells, keys=["name"]))


@web_app.command("audit")
def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="The latest N entries.")] = 100,
    admin: Annotated[str | None, typer.Option("--admin", help="Only this administrator's.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (login, logout, ...).")] = None,
    as_json: JsonOption = False,
) -> None:
    """The console's audit log: every change made through it, every login and logout."""
    from haoscar.commands.audit import AuditQuery, audit_list

    rows = audit_list(cli_env(ctx), AuditQuery(limit, admin, action))
    if as_json:
        print_json([row.as_dict() for row in rows])
        return
    cells = [
        (
            _when(r.ts),
            wire_text(r.admin),
            wire_text(r.source),
            wire_text(r.action),
            r.outcome,
            wire_text(" ".join(f"{k}={v}" for k, v in r.detail.items())),
            wire_text(r.message),
        )
        for r in rows
    ]
    columns = ["time", "admin", "address", "action", "outcome", "detail", "message"]
    console.print(table(f"{len(rows)} entries", columns, cells, keys=["time", "admin", "address", "action"]))


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")
