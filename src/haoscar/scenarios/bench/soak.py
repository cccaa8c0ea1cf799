"""``haoscar bench soak``: HA at its default profile while a CPU hog keeps every core busy; no fault is injected,
so every attempt to move the role is a false failover.

The hog is one busy-looping process per core, started by the bench at nice 0 (the daemons' own priority) and ended
by pid. The role changes come from each head's event store (``state_dir/ha/events.jsonl`` inside the host), so a
flap between two status polls is not missed; the public client's ping every 10 ms says independently whether the
head answering on the VIP ever changed. The worst event-loop lag is the daemons' own measurement (their status,
and the ``loop.lag`` warnings they log).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.events import events_path
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover import HaoscarPair, bench_spec, probe, topology
from haoscar.scenarios.bench.failover_probe import ProbeEvent, icmp_argv
from haoscar.spec import ClusterSpec
from haoscar.spec.models import HA

POLL_S = 1.0
# The daemons log a ``loop.lag`` warning (with their running maximum) for any lag above ``ha.loop_lag_warning``, at
# most one per 5 s; a low threshold turns those warnings into the lag record the soak reads. Only the warning
# threshold changes: the heartbeat, dead time and lease stay those of the default profile.
LAG_RECORD_S = 0.005
# A role change into one of these is the start of an attempt to move the role: the standby going for the lease,
# or the active head stepping down.
MOVES = ("takeover", "stopping")

Progress = Callable[[str], None]


@contextlib.contextmanager
def cpu_hog(count: int) -> Iterator[list[int]]:
    """``count`` busy-looping processes at nice 0, ended by pid on the way out."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL))
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def find_values(data: Any, key: str) -> list[float]:
    """Every number stored under ``key`` anywhere in a nested status document."""
    found: list[float] = []
    if isinstance(data, dict):
        for name, value in data.items():
            if name == key and isinstance(value, int | float):
                found.append(float(value))
            else:
                found.extend(find_values(value, key))
    elif isinstance(data, list):
        for item in data:
            found.extend(find_values(item, key))
    return found


def soak_lag(status: dict[str, Any], since: float) -> list[float]:
    """The worst event-loop lag a head's status reports for a period entirely after ``since`` (monotonic; lab
    hosts share the machine's clock): its recent window, once that window lies after ``since``."""
    lag = status.get("loop_lag")
    if not isinstance(lag, dict):
        return []
    if float(lag.get("mono", 0.0)) - float(lag.get("window_s", 0.0)) - 1.0 < since:
        return []
    return [float(lag.get("window_max_lag_ms", 0.0))]


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def owner_changes(replies: list[ProbeEvent]) -> tuple[int, float]:
    """How often the MAC answering on the VIP changed, and the longest silence between two replies (ms)."""
    changes, gap = 0, 0.0
    for before, after in itertools.pairwise(replies):
        changes += before.who != after.who
        gap = max(gap, after.t - before.t)
    return changes, round(gap * 1000, 1)


def run_soak(
    spec: ClusterSpec, state_dir: Path, minutes: float, note: Progress = lambda _m: None, lab_name: str | None = None
) -> dict[str, Any]:
    if minutes <= 0:
        raise UserError(f"--minutes {minutes:g} must be positive (fractions such as 0.5 are fine)")
    name = lab_name or f"bs{os.getpid() % 100000}"
    spec = bench_spec(spec)
    note(f"lab {name} up")
    lab = Lab.up(spec, name, state_dir)
    try:
        topo = topology(lab, spec)
        pair = HaoscarPair(lab, spec, "default", loop_lag_warning=LAG_RECORD_S)
        note("HA starting")
        pair.start()
        heads = (topo.primary, topo.standby)
        settled = time.monotonic()
        statuses: dict[str, dict[str, Any]] = {}
        status_lags: list[float] = []
        with (
            probe(lab, topo.client, icmp_argv(topo.vip, topo.client_iface)) as icmp,
            cpu_hog(os.cpu_count() or 2) as hogs,
        ):
            end = settled + minutes * 60
            while (now := time.monotonic()) < end:
                note(f"{len(hogs)} hogs, {end - now:.0f} s left")
                time.sleep(min(POLL_S, max(0.0, end - now)))
                for host in heads:
                    status = pair.status(host)
                    if status is not None:
                        statuses[host] = status
                        status_lags.extend(soak_lag(status, settled))
            ended = time.monotonic()
            replies = [e for e in icmp.events if settled <= e.t < ended]
        pair.stop()
        role_events, lag_events = _soak_events(lab, heads, settled, ended)
    finally:
        note(f"lab {name} down")
        lab.down()
    return _soak_report(
        minutes=minutes,
        ha=pair.effective.ha,
        replies=replies,
        status_lags=status_lags,
        role_events=role_events,
        lag_events=lag_events,
        statuses=statuses,
    )


def _soak_events(
    lab: Lab, heads: tuple[str, str], settled: float, ended: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The role changes and loop-lag records both heads stored during the soak window."""
    role_events: list[dict[str, Any]] = []
    lag_events: list[dict[str, Any]] = []
    for host in heads:
        for event in read_events(events_path(lab.host_dir(host) / "var/lib/haoscar")):
            if not settled <= float(event.get("mono", 0.0)) < ended:
                continue  # startup and the final shutdown are not part of the soak
            if event.get("kind") == "role":
                role_events.append(event)
            if event.get("kind") == "loop.lag":
                lag_events.append(event)
    return role_events, lag_events


def _soak_report(
    *,
    minutes: float,
    ha: HA,
    replies: list[ProbeEvent],
    status_lags: list[float],
    role_events: list[dict[str, Any]],
    lag_events: list[dict[str, Any]],
    statuses: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    changes, gap = owner_changes(replies)
    # The daemons' status is the source; the ``loop.lag`` events cover the first window after the settle point,
    # whose status figures would also include the start-up.
    lags = status_lags + [float(e.get("data", {}).get("lag_ms", 0.0)) for e in lag_events]
    moves = [e for e in role_events if e.get("data", {}).get("new") in MOVES]
    return {
        "false_failovers": len(moves),
        "max_loop_lag_ms": round(max(lags), 1) if lags else None,
        "minutes": minutes,
        "heartbeat_interval": ha.heartbeat_interval,
        "dead_time": ha.dead_time,
        "lease_s": ha.lease_s,
        "hog_processes": os.cpu_count() or 2,
        "role_changes": [f"{e.get('node')}: {e.get('message')}" for e in role_events],
        "vip_owner_changes": changes,
        "vip_replies": len(replies),
        "longest_reply_gap_ms": gap,
        "loop_lag_source": "status window_max_lag_ms (every second) + loop.lag events of the first window",
        "status_lag_polls": len(status_lags),
        "loop_lag_records": len(lag_events),
        "loop_lag_record_threshold_ms": LAG_RECORD_S * 1000,
        "final_states": {host: s.get("state") for host, s in statuses.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
