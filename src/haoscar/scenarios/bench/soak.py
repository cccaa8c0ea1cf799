"""``haoscar bench soak``: HA in its shipped configuration (replication, dnsmasq, the token API) under stress,
for both profiles: a CPU hog keeping every core busy, and 20 % frame loss on one network. No head is crashed or
cut off, so the primary is alive throughout and every death declaration, refused takeover or attempt to move the
role is wrong.

The hog is one busy-looping process per core, started by the bench at nice 0 (the daemons' own priority) and ended
by pid; the loss is the lab's ``numgen random`` drop on the primary's private interface (heartbeats, witness lease
and replication all cross it; the heartbeat and public networks stay clean). What the heads did comes from each
head's event store (``state_dir/ha/events.jsonl`` inside the host), so a flap between two status polls is not
missed:

- a **death declaration** is a ``peer`` warning ("PEER is silent on every network"), which a head raises at a tick
  once the peer has been silent on every network for the dead time;
- a **refused takeover** is a ``lease.denied`` warning (the witness kept refusing the lease because the peer still
  renews it), a ``replication.refused`` warning (a stale copy), or a role change with cause ``not-entitled``;
- a **false failover** is a head entering ``takeover`` or ``stopping``.

The public client's ping every 10 ms says independently whether the head answering on the VIP ever changed. The
worst event-loop lag is the daemons' own measurement (their status, and the ``loop.lag`` warnings they log). The
daemons and the witness run as the shipped units run them (real-time round robin, reset on fork:
``haoscar.ha.scheduling``); ``scheduling`` says what the scheduler really gave each, ``load_average`` what else the
machine was doing, and ``timeline`` lists the heads' role, peer, lease, network, witness, replication and loop-lag
events in seconds after the stress began, so that a count can be traced to what led to it.
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
from haoscar.ha.scheduling import describe
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover import HaoscarPair, bench_spec, probe, topology
from haoscar.scenarios.bench.failover_probe import ProbeEvent, icmp_argv
from haoscar.scenarios.bench.shipped import config_block, shipped_overrides
from haoscar.spec import ClusterSpec

POLL_S = 1.0
# The daemons log a ``loop.lag`` warning (with their running maximum) for any lag above ``ha.loop_lag_warning``, at
# most one per 5 s; a low threshold turns those warnings into the lag record the soak reads. Only the warning
# threshold changes: the heartbeat, dead time and lease stay those of the default profile.
LAG_RECORD_S = 0.005
# A role change into one of these is the start of an attempt to move the role: the standby going for the lease,
# or the active head stepping down.
MOVES = ("takeover", "stopping")
# A standby's (or active head's) declaration that its peer is dead, and the refusals of a takeover.
DEATH_KINDS = ("peer",)
REFUSAL_KINDS = ("lease.denied", "replication.refused")
REFUSAL_CAUSES = ("not-entitled",)
# What the per-scenario timeline lists (seconds after the soak began), to tell what led to a count.
TIMELINE_KINDS = ("role", "peer", "lease", "network", "witness", "loop", "replication", "failover")
PROFILES = ("default", "fast")
STRESSES = ("cpu-hog", "loss-20")
LOSS_PERCENT = 20

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


@contextlib.contextmanager
def stress(lab: Lab, spec: ClusterSpec, kind: str) -> Iterator[str]:
    """One stress for the duration of the block; yields what it is, in words."""
    if kind == "cpu-hog":
        with cpu_hog(os.cpu_count() or 2) as hogs:
            yield f"{len(hogs)} busy-looping processes at nice 0"
        return
    if kind == "loss-20":
        head = spec.heads.primary
        lab.loss(head.hostname, head.private_interface, LOSS_PERCENT)
        try:
            yield f"{LOSS_PERCENT} % of the frames dropped in and out of {head.hostname} {head.private_interface}"
        finally:
            lab.loss(head.hostname, head.private_interface, 0)
        return
    raise UserError(f"unknown stress {kind!r}; use one of {', '.join(STRESSES)}")


def count_events(events: list[dict[str, Any]], settled: float, ended: float) -> dict[str, Any]:
    """What both heads' events say about one soak window [settled, ended) (monotonic; lab hosts share the clock)."""
    window = [e for e in events if settled <= float(e.get("mono", 0.0)) < ended]
    roles = [e for e in window if e.get("kind") == "role"]
    moves = [e for e in roles if e.get("data", {}).get("new") in MOVES]
    deaths = [e for e in window if e.get("kind") in DEATH_KINDS]
    refusals = [e for e in window if e.get("kind") in REFUSAL_KINDS]
    refusals += [e for e in roles if e.get("data", {}).get("cause") in REFUSAL_CAUSES]

    def said(found: list[dict[str, Any]]) -> list[str]:
        return [f"{e.get('node')}: {e.get('kind')} {e.get('message')}" for e in found]

    timeline = [
        f"{float(e.get('mono', 0.0)) - settled:8.3f} {e.get('node')}: {e.get('kind')} {e.get('message')}"
        for e in sorted(window, key=lambda e: float(e.get("mono", 0.0)))  # both heads' events, in time order
        if str(e.get("kind")).split(".")[0] in TIMELINE_KINDS
    ]
    return {
        "false_failovers": len(moves),
        "wrongful_death_declarations": len(deaths),
        "refused_takeovers": len(refusals),
        "death_declarations": said(deaths),
        "refusals": said(refusals),
        "role_changes": [f"{e.get('node')}: {e.get('message')}" for e in roles],
        "timeline": timeline,
        "loop_lag_records": [
            float(e.get("data", {}).get("lag_ms", 0.0)) for e in window if e.get("kind") == "loop.lag"
        ],
    }


def run_soak(
    spec: ClusterSpec,
    state_dir: Path,
    minutes: float,
    note: Progress = lambda _m: None,
    *,
    lab_name: str | None = None,
    profiles: tuple[str, ...] = PROFILES,
    stresses: tuple[str, ...] = STRESSES,
) -> dict[str, Any]:
    """``minutes`` of each stress at each profile on one lab (always taken down); the JSON ``--json`` prints."""
    if minutes <= 0:
        raise UserError(f"--minutes {minutes:g} must be positive (fractions such as 0.5 are fine)")
    for kind in stresses:
        if kind not in STRESSES:
            raise UserError(f"unknown stress {kind!r}; use one of {', '.join(STRESSES)}")
    name = lab_name or f"bs{os.getpid() % 100000}"
    spec = bench_spec(spec)
    scenarios: dict[str, dict[str, Any]] = {}
    note(f"lab {name} up")
    lab = Lab.up(spec, name, state_dir)
    try:
        for profile in profiles:
            for kind in stresses:
                label = f"{profile}/{kind}"
                scenarios[label] = _one_scenario(lab, spec, profile, kind, minutes=minutes, note=_prefixed(note, label))
                scenarios[label]["fenced_hosts"] = _restore_fenced(lab, spec)
    finally:
        note(f"lab {name} down")
        lab.down()
    return _soak_report(spec, minutes, scenarios)


def _restore_fenced(lab: Lab, spec: ClusterSpec) -> list[str]:
    """The heads a daemon fenced (the lab method crashes the host), booted again so the next scenario can run."""
    fenced = [h.hostname for h in (spec.heads.primary, spec.heads.standby) if lab.host(h.hostname).state == "crashed"]
    for host in fenced:
        lab.restore(host)
    return fenced


def _prefixed(note: Progress, prefix: str) -> Progress:
    return lambda message: note(f"{prefix}: {message}")


def _one_scenario(
    lab: Lab, spec: ClusterSpec, profile: str, kind: str, *, minutes: float, note: Progress
) -> dict[str, Any]:
    topo = topology(lab, spec)
    pair = HaoscarPair(lab, spec, profile, loop_lag_warning=LAG_RECORD_S, **shipped_overrides(spec))
    note("HA starting")
    pair.start()
    heads = (topo.primary, topo.standby)
    scheduling = _scheduling(pair)
    statuses: dict[str, dict[str, Any]] = {}
    status_lags: list[float] = []
    probing_polls = 0
    load_before = _load()
    try:
        settled = time.monotonic()
        with probe(lab, topo.client, icmp_argv(topo.vip, topo.client_iface)) as icmp, stress(lab, spec, kind) as what:
            end = settled + minutes * 60
            while (now := time.monotonic()) < end:
                note(f"{what}, {end - now:.0f} s left")
                time.sleep(min(POLL_S, max(0.0, end - now)))
                for host in heads:
                    status = pair.status(host)
                    if status is not None:
                        statuses[host] = status
                        status_lags.extend(soak_lag(status, settled))
                        probing_polls += status.get("probing") is not None
            ended = time.monotonic()
            replies = [e for e in icmp.events if settled <= e.t < ended and e.kind == "REPLY"]
        alive = {host: pair.running().proc(host).poll() is None for host in heads}
        load_after = _load()
    finally:
        pair.stop()
    events = [e for host in heads for e in read_events(events_path(lab.host_dir(host) / "var/lib/haoscar"))]
    counted = count_events(events, settled, ended)
    changes, gap = owner_changes(replies)
    lags = status_lags + counted.pop("loop_lag_records")
    return {
        "stress": what,
        "config": config_block(pair.effective.ha, profile=profile),
        "scheduling": scheduling,
        # the machine's load average (1, 5, 15 min) as the stress began and as it ended: the figures depend on it
        "load_average": {"start": load_before, "end": load_after},
        **counted,
        "daemons_alive_throughout": alive,
        "probing_polls": probing_polls,
        "vip_owner_changes": changes,
        # no reply at all means the client's probe did not run, not that the VIP was silent: its counts say nothing
        "client_probe_ok": bool(replies),
        "vip_replies": len(replies),
        "longest_reply_gap_ms": gap,
        "max_loop_lag_ms": round(max(lags), 1) if lags else None,
        "status_lag_polls": len(status_lags),
        "final_states": {host: s.get("state") for host, s in statuses.items()},
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _scheduling(pair: HaoscarPair) -> dict[str, str]:
    """What the scheduler really gives each daemon and the witness (started as the shipped units start them)."""
    ha = pair.running()
    found = {head: describe(ha.proc(head).pid) for head in (ha.primary, ha.standby)}
    if ha.witness_host is not None:
        found[ha.witness_host] = describe(ha.proc(ha.witness_host, "witness").pid)
    return found


def _soak_report(spec: ClusterSpec, minutes: float, scenarios: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def total(name: str) -> int:
        return sum(int(s[name]) for s in scenarios.values())

    lags = [s["max_loop_lag_ms"] for s in scenarios.values() if s["max_loop_lag_ms"] is not None]
    floors = {
        name: {"value": total(name), "limit": 0, "pass": total(name) == 0}
        for name in ("wrongful_death_declarations", "refused_takeovers", "false_failovers")
    }
    first = next(iter(scenarios.values()), None)
    return {
        "config": first["config"] if first else None,
        "scheduling": first["scheduling"] if first else None,
        "minutes_per_scenario": minutes,
        "scenarios": scenarios,
        "wrongful_death_declarations": total("wrongful_death_declarations"),
        "refused_takeovers": total("refused_takeovers"),
        "false_failovers": total("false_failovers"),
        "vip_owner_changes": total("vip_owner_changes"),
        # a head its peer fenced (the lab's fencing crashes it), restored before the next scenario
        "fenced_hosts": {label: s["fenced_hosts"] for label, s in scenarios.items() if s.get("fenced_hosts")},
        "max_loop_lag_ms": max(lags) if lags else None,
        "client_probe_failed_in": [name for name, s in scenarios.items() if not s["client_probe_ok"]],
        "floors": floors,
        "all_floors_pass": all(f["pass"] for f in floors.values()),
        "counted_as": {
            "wrongful_death_declarations": "`peer` warnings (peer silent on every network for the dead time, raised "
            "at a tick) on either head; the primary is never crashed, so each one is wrong. A silence shorter than "
            "the dead time plus one heartbeat interval may end before a tick sees it; probing_polls (the status's "
            "lease probe, polled every second) is a second, sampled source",
            "refused_takeovers": "lease.denied and replication.refused warnings, and role changes with cause "
            "not-entitled",
            "false_failovers": "a head entering takeover or stopping",
        },
        "hog_processes": os.cpu_count() or 2,
        "loss": f"{LOSS_PERCENT} % on {spec.heads.primary.hostname} {spec.heads.primary.private_interface}",
        "loop_lag_source": "status window_max_lag_ms (every second) + loop.lag events of the first window",
        "loop_lag_record_threshold_ms": LAG_RECORD_S * 1000,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
