"""The demo's failover act: HA on both heads, live status, the primary crashes, the measured failover time, the
primary restored, the role switched back. The lead wires ``run_failover_act`` into ``haoscar demo``."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from haoscar.lab.lab import Lab
from haoscar.scenarios.ha_lab import HaLab, start_ha
from haoscar.scenarios.owner_sampler import OwnerSampler
from haoscar.spec.models import ClusterSpec


def _table(ha: HaLab) -> Table:
    table = Table(title=f"HA - alias IP {ha.vip}", title_justify="left", header_style="bold")
    for column in ("head", "state", "VIP", "lease left", "peer heard on", "last failover"):
        table.add_column(column)
    for head in (ha.primary, ha.standby):
        status = ha.status(head, timeout=0.5)
        if status is None:
            table.add_row(head, "[red]down[/]", "-", "-", "-", "-")
            continue
        nets = status["peer"]["networks"]
        heard = " ".join(name for name, info in nets.items() if info["up"]) or "[red]nothing[/]"
        last = status["last_failover"]
        table.add_row(
            head,
            status["state"],
            "[green]yes[/]" if status["vip"]["held"] else "no",
            f"{status['lease']['remaining_s']:.2f} s" if status["lease"]["valid"] else "-",
            heard,
            f"{last['kind']} {last['took_s'] * 1000:.0f} ms" if last else "-",
        )
    return table


def _watch(ha: HaLab, console: Console, seconds: float) -> None:
    if not console.is_terminal:  # a log or a pipe: one table at the end, not the frames of a live view
        time.sleep(seconds)
        console.print(_table(ha))
        return
    with Live(_table(ha), console=console, refresh_per_second=8) as live:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.25)
            live.update(_table(ha))


def run_failover_act(lab: Lab, spec: ClusterSpec, console: Console) -> dict[str, Any]:
    """Returns what was measured: failover time, double-ownership window, switchback time."""
    console.rule("[bold]HA: a primary and a hot standby, a witness, one alias IP")
    ha = start_ha(lab, spec)
    try:
        _watch(ha, console, 2.0)
        console.print(f"[bold]Crashing the primary {ha.primary}[/] (every process killed, links down)...")
        with OwnerSampler(ha) as sampler:
            time.sleep(0.2)
            crashed = time.monotonic()
            lab.crash(ha.primary)
            ha.wait_for(ha.standby, "active", 15)
            time.sleep(0.3)
        taken = sampler.first_owned_by(ha.standby, crashed)
        failover_ms = None if taken is None else round((taken - crashed) * 1000)
        double_ms = round(sampler.double_ownership_s(crashed) * 1000)
        console.print(
            f"[green]{ha.standby} took over the alias IP {failover_ms} ms after the crash[/]; "
            f"moments with two owners: {double_ms} ms"
        )
        _watch(ha, console, 1.5)
        console.print(f"Restoring {ha.primary}: it boots and rejoins as standby (failback: {spec.ha.failback})")
        lab.restore(ha.primary)
        ha.start_daemon(ha.primary)
        ha.wait_for(ha.primary, "standby", 15)
        _watch(ha, console, 1.5)
        console.print("Switching the role back to the primary (graceful: services, then the VIP, then handover)")
        started = time.monotonic()
        ha.control(ha.standby, "switchover")
        ha.wait_for(ha.primary, "active", 15)
        switchback_ms = round((time.monotonic() - started) * 1000)
        console.print(f"[green]{ha.primary} is active again after {switchback_ms} ms[/]")
        _watch(ha, console, 1.5)
        return {"failover_ms": failover_ms, "double_ownership_ms": double_ms, "switchback_ms": switchback_ms}
    finally:
        ha.stop()
