"""``haoscar ha ...``: run a head's HA daemon, show its status, move the role, make the shared key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table
from haoscar.errors import UserError

ha_app = typer.Typer(help="The highly available head node: daemon, status, switchover.", no_args_is_help=True)

SpecOpt = Annotated[Path, typer.Option("--spec", help="The cluster spec whose ha: section configures the daemon.")]


@ha_app.command("run")
def run(
    ctx: typer.Context,
    node: Annotated[str, typer.Option("--node", help="This head: its host name, or primary / standby.")],
    spec_file: SpecOpt,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Overrides ha.key_file.")] = None,
) -> None:
    """Run the HA daemon of one head in the foreground (logs to stderr, one line per event; SIGTERM stops it)."""
    from haoscar.ha.runner import run_head
    from haoscar.spec.loader import load_spec

    spec = load_spec(spec_file)
    asyncio.run(run_head(spec, node, cli_context(ctx).state_dir, key_file))


@ha_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key (mode 0600).")] = Path(
        "/etc/haoscar/ha.key"
    ),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Make the HMAC key shared by both heads and the witness."""
    from haoscar.ha.keyfile import generate_key

    path = generate_key(out, force)
    console.print(f"wrote a new HA key to {path} (mode 0600); copy it to the other head and the witness")


def _ask(ctx: typer.Context, op: str) -> dict[str, Any]:
    from haoscar.ha.control import control_path, request

    return request(control_path(cli_context(ctx).state_dir), op)


def _fmt_s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} s"


def render_status(status: dict[str, Any]) -> None:
    peer = status["peer"]
    lease = status["lease"]
    nets = peer["networks"]
    net_text = " ".join(f"{name}:{'up' if info['up'] else 'DOWN'}" for name, info in nets.items())
    me_lease = f"{_fmt_s(lease['remaining_s'])}" if lease["valid"] else "-"
    rows = [
        (
            status["node"],
            status["role"],
            status["state"],
            "yes" if status["vip"]["held"] else "no",
            me_lease,
            "(this head)",
        ),
        (
            peer["node"],
            "standby" if status["role"] == "primary" else "primary",
            peer["state"],
            "yes" if peer["holds_vip"] else "no",
            _fmt_s(peer["lease_remaining_s"]) if peer["lease_remaining_s"] else "-",
            net_text,
        ),
    ]
    title = f"HA status of {status['node']} — VIP {status['vip']['address']}"
    if status["degraded"]:
        title += " [yellow](degraded)[/]"
    console.print(table(title, ["head", "role", "state", "VIP", "lease left", "heartbeats"], rows))
    holder = lease["holder"] or "nobody"
    if lease["witness"]:
        console.print(
            f"witness {', '.join(lease['witness'])}: lease holder [bold]{holder}[/] "
            f"({_fmt_s(lease['holder_remaining_s'])} left), last reply {lease['witness_last_reply_ms']} ms ago"
        )
    else:
        console.print("no witness: takeover only after fencing the peer")
    if status["resources"]:
        console.print(
            table(
                "Resources",
                ["service", "kind", "state", "restarts", "last error"],
                [
                    (r["name"], r.get("kind"), r["state"], r.get("total_restarts"), r.get("last_error"))
                    for r in status["resources"]
                ],
            )
        )
    dropped = {k: v for k, v in status["dropped"].items() if v}
    console.print("dropped packets: " + (", ".join(f"{k}={v}" for k, v in dropped.items()) or "none"))
    last = status["last_failover"]
    if last:
        console.print(f"last {last['kind']}: {last['reason']}, took {last['took_s'] * 1000:.0f} ms")
    fencing = status["fencing"]
    if fencing["last"]:
        f = fencing["last"]
        console.print(f"last fence ({f['method']} {f['target']}): {'ok' if f['ok'] else 'FAILED'} {f['message']}")
    for warning in status["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


@ha_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    node: Annotated[str | None, typer.Option("--node", help="Only for the record: the local head's name.")] = None,
) -> None:
    """Both heads as the local daemon sees them: roles, heartbeats per network, lease, resources, failovers."""
    data = _ask(ctx, "status")
    if node is not None and data.get("node") != node:
        raise UserError(f"the daemon here is {data.get('node')!r}, not {node!r}; pass the right --state-dir")
    if as_json:
        print_json(data)
    else:
        render_status(data)


def _change(ctx: typer.Context, op: str) -> None:
    reply = _ask(ctx, op)
    if not reply.get("ok"):
        raise UserError(str(reply.get("error", f"{op} refused")))
    console.print(reply.get("message", "ok"))


@ha_app.command("switchover")
def switchover(ctx: typer.Context) -> None:
    """Move the role gracefully to the standby (run on the active head)."""
    _change(ctx, "switchover")


@ha_app.command("failback")
def failback(ctx: typer.Context) -> None:
    """Give the role back to the primary (failback: manual), on either head."""
    _change(ctx, "failback")


def register(app: typer.Typer) -> None:
    app.add_typer(ha_app, name="ha")
