"""``haoscar bench split-brain``: how long two heads own the alias IP at once, haoscar beside keepalived.

One lab serves every case. For each scenario and each system the pair is started fresh (the primary active, the
standby standing by), then the fault is applied for ``fault_s`` seconds, removed, and watched for ``recovery_s``
more:

- ``heads_partitioned``: the heads cannot reach each other on any network; both still reach the public client and
  the witness;
- ``active_isolated``: the active head is cut from every other lab host (the standby, the witness, the client, the
  compute nodes);
- ``active_frozen``: every process of the active head stopped (``lab freeze``: SIGSTOP, links stay up, the kernel
  keeps answering), then thawed.

The owner sampler (``haoscar.scenarios.owner_sampler``) reads both heads every 5 ms: a head *owns* the VIP when the
address is on its public interface and the link is up. ``two_owner_ms`` adds up the time two heads owned it. The
public client meanwhile pings the VIP every 10 ms and reports the Ethernet source of each reply, so the result also
says *whose MAC answered* it, and which heads sent ARP for the VIP on its network and what its ARP cache held.

keepalived runs tuned (priorities 254/253, nopreempt, see ``keepalived_peer``) with ``advert_int`` equal to
haoscar's heartbeat interval at the same profile; haoscar runs the shipped default (witness, lab fencing).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover import Contender, HaoscarPair, Topology, bench_spec, probe, topology
from haoscar.scenarios.bench.failover_probe import ProbeStream, icmp_argv
from haoscar.scenarios.bench.keepalived_peer import KeepalivedPair
from haoscar.scenarios.bench.shipped import config_block, shipped_overrides
from haoscar.scenarios.ha_lab import HaLab, ha_spec
from haoscar.scenarios.owner_sampler import OwnerSampler, Sample
from haoscar.spec import ClusterSpec

SCENARIOS = ("heads_partitioned", "active_isolated", "active_frozen")
SYSTEMS = ("haoscar", "keepalived")
SAMPLE_PERIOD_S = 0.005
BASELINE_S = 0.3
MAX_UNSTEADY_STARTS = 5

Progress = Callable[[str], None]


@dataclass
class SplitBrainOptions:
    scenarios: tuple[str, ...] = SCENARIOS
    systems: tuple[str, ...] = SYSTEMS
    fault_s: float = 5.0
    recovery_s: float = 3.0
    profile: str = "default"
    lab_name: str = field(default_factory=lambda: f"sb{os.getpid() % 100000}")

    def check(self) -> None:
        unknown = [s for s in self.scenarios if s not in SCENARIOS] + [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise UserError(
                f"unknown scenario or system {', '.join(unknown)}; scenarios: {', '.join(SCENARIOS)}; "
                f"systems: {', '.join(SYSTEMS)}"
            )
        if not self.scenarios or not self.systems:
            raise UserError("scenarios and systems must each name at least one")
        if self.fault_s <= 0 or self.recovery_s < 0:
            raise UserError(f"fault_s {self.fault_s:g} must be positive and recovery_s {self.recovery_s:g} >= 0")


def inject(lab: Lab, topo: Topology, scenario: str) -> Callable[[], None]:
    """Apply the fault of ``scenario``; return what removes it."""
    if scenario == "heads_partitioned":
        lab.partition(topo.primary, topo.standby)
        return lab.heal
    if scenario == "active_isolated":
        for host in lab.hosts:
            if host != topo.primary:
                lab.partition(topo.primary, host)
        return lab.heal
    lab.freeze(topo.primary)

    def thaw() -> None:
        _thaw(lab, topo.primary)

    return thaw


def _thaw(lab: Lab, host: str) -> None:
    """Thaw ``host`` if it is still frozen: haoscar may have fenced (crashed) it meanwhile, since its kernel still
    answered for the VIP, and a fence can land between reading the state and thawing."""
    try:
        if lab.host(host).state == "frozen":
            lab.thaw(host)
    except UserError:
        if lab.host(host).state != "crashed":
            raise


def _two_owner_s(samples: list[Sample], start: float, end: float) -> float:
    """Time in [start, end) during which two heads owned the VIP (each sample holds until the next one)."""
    total = 0.0
    for first, second in itertools.pairwise(samples):
        if first.t >= start and first.t < end and len(first.reachable) >= 2:
            total += min(second.t, end) - first.t
    return total


def _collapse(values: list[str | None]) -> list[str | None]:
    """``values`` without consecutive repeats: the sequence of changes."""
    return [v for v, _ in itertools.groupby(values)]


def _period_stats(samples: list[Sample], since: float) -> dict[str, float | None]:
    gaps = [(b.t - a.t) * 1000 for a, b in itertools.pairwise(s for s in samples if s.t >= since)]
    if not gaps:
        return {"median": None, "p99": None, "max": None}
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": round(statistics.median(gaps), 2), "p99": round(p99, 2), "max": round(ordered[-1], 2)}


@dataclass(frozen=True)
class Window:
    """The moments of one case on the shared monotonic clock."""

    fault: float
    healed: float
    end: float


def summarize(sampler: OwnerSampler, icmp: ProbeStream, macs: dict[str, str], win: Window) -> dict[str, Any]:
    """The measures of one case: double ownership (during the fault, after it), and what the client saw."""
    samples = list(sampler.samples)
    replies = [e for e in list(icmp.events) if e.t >= win.fault and e.kind == "REPLY"]
    answered = [macs.get(e.who, e.who) for e in replies]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise([win.fault, *[e.t for e in replies]])]
    during = _two_owner_s(samples, win.fault, win.healed)
    after = _two_owner_s(samples, win.healed, win.end)
    arp = [a for a in sampler.arp if a.t >= win.fault]
    return {
        "two_owner_ms": round((during + after) * 1000, 1),
        "two_owner_during_fault_ms": round(during * 1000, 1),
        "two_owner_after_heal_ms": round(after * 1000, 1),
        "max_owners": sampler.max_owners(win.fault),
        "owners_sequence": [sorted(s) for s in _collapse_sets([s.reachable for s in samples if s.t >= win.fault])],
        "client_replies_by_head": {h: answered.count(h) for h in sorted(set(answered), key=str)},
        "client_answering_sequence": _collapse(list(answered)),
        "client_longest_silence_ms": round(max(gaps), 1) if gaps else None,
        "client_arp_senders": {
            h: sum(1 for a in arp if (a.head or a.mac) == h) for h in {a.head or a.mac for a in arp}
        },
        "client_arp_cache_sequence": _collapse([s.client_owner for s in samples if s.t >= win.fault]),
        "sample_period_ms": _period_stats(samples, win.fault),
        "samples": sum(1 for s in samples if s.t >= win.fault),
    }


def _collapse_sets(values: list[frozenset[str]]) -> list[frozenset[str]]:
    return [v for v, _ in itertools.groupby(values)]


def _start_steady(lab: Lab, topo: Topology, contender: Contender) -> int:
    """Start ``contender`` until the primary alone owns the VIP after the settle time; returns the failed or unsteady
    starts. A start that fails (on a loaded machine a head can lose its first lease while starting) is not what
    the bench measures: it is counted and done again, up to ``MAX_UNSTEADY_STARTS`` times."""
    error: Exception | None = None
    for attempt in range(MAX_UNSTEADY_STARTS + 1):
        try:
            contender.start()
        except (RuntimeError, TimeoutError) as exc:
            error = exc
            contender.stop()  # whatever the failed start left running (stopping twice is harmless)
        else:
            time.sleep(contender.settle_s)
            if contender.steady():
                return attempt
            contender.stop()
        if lab.host(topo.primary).state == "crashed":
            lab.restore(topo.primary)
    raise RuntimeError(f"{contender.label}: {MAX_UNSTEADY_STARTS + 1} starts without one steady owner") from error


def run_case(
    lab: Lab, spec: ClusterSpec, topo: Topology, contender: Contender, *, scenario: str, opts: SplitBrainOptions
) -> dict[str, Any]:
    """One scenario for one system, from a fresh start of the pair to its stop (and the primary booted again)."""
    unsteady = _start_steady(lab, topo, contender)
    try:
        running = contender.running() if isinstance(contender, HaoscarPair) else HaLab(lab, spec, b"")
        macs = {topo.primary_mac: topo.primary, topo.standby_mac: topo.standby}
        with contextlib.ExitStack() as stack:
            icmp = stack.enter_context(probe(lab, topo.client, icmp_argv(topo.vip, topo.client_iface)))
            sampler = stack.enter_context(OwnerSampler(running, topo.client, period=SAMPLE_PERIOD_S))
            time.sleep(BASELINE_S)
            fault = time.monotonic()
            undo = inject(lab, topo, scenario)
            try:
                time.sleep(max(0.0, fault + opts.fault_s - time.monotonic()))
            finally:
                undo()
            healed = time.monotonic()
            time.sleep(opts.recovery_s)
            end = time.monotonic()
            result = summarize(sampler, icmp, macs, Window(fault, healed, end))
        if isinstance(contender, HaoscarPair) and contender.ha is not None and contender.ha.fence is not None:
            result["fenced"] = [host for at, host, ok in contender.ha.fence.requests if ok and at >= fault]
    finally:
        contender.stop()
        lab.heal()
        _thaw(lab, topo.primary)
        if lab.host(topo.primary).state == "crashed":
            lab.restore(topo.primary)
    result["unsteady_starts"] = unsteady
    return result


def contender_for(system: str, lab: Lab, spec: ClusterSpec, opts: SplitBrainOptions, workdir: Path) -> Contender:
    if system == "haoscar":
        return HaoscarPair(lab, spec, opts.profile, **shipped_overrides(spec))
    advert = ha_spec(spec, profile=opts.profile).ha.heartbeat_interval
    return KeepalivedPair(lab, spec, advert, workdir / f"keepalived-{advert:g}", tuned=True)


def run_split_brain_bench(
    spec: ClusterSpec, state_dir: Path, options: SplitBrainOptions, note: Progress = lambda _m: None
) -> dict[str, Any]:
    """Every scenario for every system on one lab (always taken down); the JSON document ``--json`` prints."""
    options.check()
    spec = bench_spec(spec)
    workdir = Path(tempfile.mkdtemp(prefix="haoscar-bench-split-"))
    cases: dict[str, dict[str, Any]] = {}
    note(f"lab {options.lab_name} up")
    lab = Lab.up(spec, options.lab_name, state_dir)
    try:
        topo = topology(lab, spec)
        for scenario in options.scenarios:
            for system in options.systems:
                note(f"{scenario}: {system}")
                contender = contender_for(system, lab, spec, options, workdir)
                cases.setdefault(scenario, {})[system] = run_case(
                    lab, spec, topo, contender, scenario=scenario, opts=options
                )
    finally:
        note(f"lab {options.lab_name} down")
        lab.down()
    shutil.rmtree(workdir, ignore_errors=True)  # kept after a failure: keepalived's logs tell why
    return report(spec, options, cases)


def report(spec: ClusterSpec, options: SplitBrainOptions, cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ha = ha_spec(spec, profile=options.profile, **shipped_overrides(spec)).ha
    two_owner = {scenario: {system: r["two_owner_ms"] for system, r in by.items()} for scenario, by in cases.items()}
    return {
        "two_owner_ms": two_owner,
        "haoscar_two_owner_total_ms": round(sum(by.get("haoscar", 0.0) for by in two_owner.values()), 1)
        if "haoscar" in options.systems
        else None,
        "scenarios": cases,
        "fault_s": options.fault_s,
        "recovery_s": options.recovery_s,
        "sample_period_target_ms": SAMPLE_PERIOD_S * 1000,
        "profile": options.profile,
        "config": config_block(
            ha,
            profile=options.profile,
            keepalived={"advert_int": ha.heartbeat_interval, "priorities": [254, 253], "nopreempt": True},
            owner_sample_period_ms=SAMPLE_PERIOD_S * 1000,
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
