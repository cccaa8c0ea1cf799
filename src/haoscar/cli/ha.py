"""``haoscar ha ...``: run a head's HA daemon, show its status, move the role, make the shared key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text
from haoscar.commands.env import Env

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
    from haoscar.commands import ha

    # The process becomes the lean daemon (same pid) once the spec and node are checked.
    ha.run_head(Env(cli_context(ctx).state_dir), ha.RunHead(node=node, spec_file=spec_file, key_file=key_file))


@ha_app.command("keygen")
def keygen(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the single shared key of older installations here instead.")
    ] = None,
    purpose: Annotated[
        list[str] | None, typer.Option("--purpose", help="heartbeat, lease or replication (repeatable; default all).")
    ] = None,
    key_dir: Annotated[Path, typer.Option("--dir", help="The key directory.")] = Path("/etc/haoscar/keys"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Make the HA keys: one per purpose (heartbeat, lease, replication), mode 0600."""
    from haoscar.commands import ha

    request = ha.Keygen(out=out, force=force, purposes=tuple(purpose or ()), key_dir=key_dir)
    written = ha.keygen(Env(cli_context(ctx).state_dir), request)
    if out is not None:
        console.print(
            f"wrote a new HA key to {written.path} (mode 0600); copy it to the other head and the witness", markup=False
        )
        return
    for path in written.written:
        where = "the other head and the witness" if path.stem == "lease" else "the other head only (not the witness)"
        console.print(f"wrote {path} (mode 0600); copy it to {where}", markup=False)


def _fmt_s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} s"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 1000:.0f} ms"


def _ago(wall: Any) -> str:
    return "never" if wall is None else f"{max(0.0, time.time() - float(wall)):.0f} s ago"


def _replication_cell(repl: dict[str, Any] | None) -> str:
    """Direction, lag, what is pending, the last full pass, the stale flag and any error (ha.replication)."""
    if not repl:
        return "off"
    role = repl.get("role", "none")
    direction = {"source": f"to {repl.get('peer')}", "target": f"from {repl.get('peer')}"}.get(role, "not running")
    lines = [f"{direction} ({repl.get('phase')})"]
    if role == "source":
        lines.append(
            f"lag {float(repl.get('lag_s') or 0):.2f} s, {repl.get('files_pending', 0)} files / "
            f"{repl.get('bytes_pending', 0)} bytes pending"
        )
    lines.append(f"last full pass {_ago(repl.get('last_full_pass'))}, db LSN {repl.get('db_lsn', 0)}")
    if repl.get("standby_stale"):
        whose = "standby's copy" if role == "source" else "own copy"
        lines.append(f"[red]{whose} STALE[/]: {escape(str(repl.get('stale_reason') or '?'))}")
    if repl.get("forced"):
        lines.append("[red]takeover FORCED by the administrator[/]")
    error = repl.get("last_error") or repl.get("glue_error")
    if error:
        lines.append(f"[red]error[/]: {escape(str(error))}")
    return "\n".join(lines)


def _column(status: dict[str, Any]) -> list[str]:
    """One head's own status as the cells of its column (see ``ROWS``)."""
    peer, lease = status["peer"], status["lease"]
    nets = " ".join(f"{name}:{'up' if info['up'] else '[red]DOWN[/]'}" for name, info in peer["networks"].items())
    holder = lease["holder"] or "nobody"
    if lease["witness"]:
        holder += f" ({_fmt_s(lease['holder_remaining_s'])} left)"
    else:
        holder = "no witness"
    resources = (
        "\n".join(f"{r['name']}: {r['state']}, {r.get('total_restarts', 0)} restarts" for r in status["resources"])
        or "none"
    )
    dropped = ", ".join(f"{k}={v}" for k, v in status["dropped"].items() if v) or "none"
    last = status["last_failover"]
    failover = "-"
    if last:
        failover = f"{last['kind']}: {wire_text(last['reason'])}\n{_ms(last['took_s'])} after the last heartbeat"
        if last.get("since_dead_s") is not None:
            failover += f"\n{_ms(last['since_dead_s'])} after declaring the peer dead"
    fence = status["fencing"]["last"]
    return [
        status["role"],
        wire_text(status.get("state_detail", status["state"]))
        + (" [yellow](degraded)[/]" if status["degraded"] else ""),
        "yes" if status["vip"]["held"] else "no",
        nets,
        _fmt_s(lease["remaining_s"]) if lease["valid"] else "-",
        holder,
        resources,
        dropped,
        failover,
        "-" if not fence else f"{fence['method']} {fence['target']}: {'ok' if fence['ok'] else 'FAILED'}",
        _replication_cell(status.get("replication")),
        "\n".join(wire_text(w) for w in status["warnings"]) or "none",
    ]


ROWS = [
    "role",
    "state",
    "holds the VIP",
    "hears its peer on",
    "own lease left",
    "lease holder",
    "resources",
    "dropped packets",
    "last failover",
    "last fence",
    "replication",
    "warnings",
]


def render_status(both: dict[str, Any]) -> None:
    """Both heads side by side: the local daemon's status and the peer's own (or why it could not be read)."""
    local, peer = both["local"], both["peer"]
    local_cells = _column(local)
    if peer.get("reachable"):
        peer_name, peer_cells = peer["node"], _column(peer)
    else:
        seen = local["peer"]
        peer_name = seen["node"]
        unreachable = f"[red]unreachable[/]: {wire_text(peer.get('error', 'no answer'))}"
        peer_cells = [unreachable, f"{seen['state']} (as {local['node']} hears it)"] + ["?"] * (len(ROWS) - 2)
    title = f"HA status — VIP {local['vip']['address']}"
    rows = [(name, a, b) for name, a, b in zip(ROWS, local_cells, peer_cells, strict=True)]
    # The names again as a row: a pipe gets the headers upper-cased, and `grep head2` must still find the peer.
    rows.insert(0, ("head", wire_text(local["node"]), wire_text(peer_name)))
    console.print(table(title, ["", f"{local['node']} (this head)", peer_name], rows))


@ha_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"local": ..., "peer": ...} as JSON.')] = False,
    node: Annotated[str | None, typer.Option("--node", help="Only for the record: the local head's name.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the peer's status.")] = 1.0,
) -> None:
    """Both heads side by side: roles, heartbeats per network, lease, resources, dropped packets, failovers.

    The local head's status comes from its daemon's control socket; the peer's from its read-only status over
    HTTP (``ha.status_port`` on its cluster addresses). An unreachable peer is shown as such."""
    from haoscar.commands import ha

    with Env(cli_context(ctx).state_dir) as env:
        both = ha.status(env, ha.HaStatusRequest(node=node, timeout=timeout))
    if as_json:
        print_json(both.as_dict())
    else:
        render_status(both.as_dict())


def _act(ctx: typer.Context, op: str, force: bool = False) -> None:
    from haoscar.commands import ha

    with Env(cli_context(ctx).state_dir) as env:
        done = ha.act(env, ha.HaAction(op=op, force=force))
    console.print(done.message, style="bold red" if done.forced else None, markup=False)


@ha_app.command("switchover")
def switchover(ctx: typer.Context) -> None:
    """Move the role gracefully to the standby (run on the active head)."""
    _act(ctx, "switchover")


@ha_app.command("takeover")
def takeover(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take over although this standby's replicated data is stale (loses changes)."),
    ] = False,
) -> None:
    """On a standby whose replicated copy is stale: allow it to take the role when the active head is dead.

    Without --force a stale standby refuses (and says why); with it, the changes it missed are lost and the
    takeover is logged as a critical event. The role is still taken only with the peer silent and the lease."""
    _act(ctx, "takeover", force)


@ha_app.command("failback")
def failback(ctx: typer.Context) -> None:
    """Give the role back to the primary (failback: manual), on either head."""
    _act(ctx, "failback")


def register(app: typer.Typer) -> None:
    app.add_typer(ha_app, name="ha")
