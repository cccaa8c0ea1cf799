"""``haoscar bench failover``: primary crash -> VIP answering from the standby, for haoscar and keepalived.

One lab serves every run. A run starts the contender (haoscar at a profile, or keepalived at an advert interval)
on both heads, waits until the primary answers on the alias IP, starts the probes (an ICMP echo every 10 ms from
the public client; for haoscar also DHCP exchanges from a compute client), takes ``t0`` on the monotonic clock,
crashes the primary (``Lab.crash``: every process SIGKILLed, links down) and waits for the first echo reply whose
frame comes from the *standby's* MAC address, and for the first DHCP ACK whose server identifier is the standby.
Then it stops the contender, boots the primary again, and the next run starts from the initial roles.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from haoscar.errors import UserError
from haoscar.events import events_path
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover_probe import ProbeStream, dhcp_argv, heard_argv, icmp_argv
from haoscar.scenarios.bench.failover_report import (
    ECHO_GRID_S,
    KEEPALIVED_SERIES,
    CrashResult,
    Series,
    new_series,
    report,
)
from haoscar.scenarios.bench.keepalived_peer import KeepalivedPair
from haoscar.scenarios.bench.shipped import shipped_overrides
from haoscar.scenarios.ha_lab import HaLab, ha_spec, start_ha, wait_until
from haoscar.spec import ClusterSpec, all_nodes
from haoscar.spec.models import Service
from haoscar.spec.nodes import group_names

REPLY_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 15.0
IDLE_SAMPLE_S = 10.0
SETTLE_TIMEOUT_S = 30.0
MAX_UNSTEADY_STARTS = 5


class Contender(Protocol):
    """Something that keeps the alias IP on one head of the lab: haoscar, or keepalived."""

    label: str

    @property
    def settle_s(self) -> float:
        """How long to let a freshly started pair run before the crash, so that the standby has left its startup
        timers behind and heard the active head: the crash must hit a steady state."""

    @property
    def period_s(self) -> float:
        """The heartbeat (advert) interval: the crash comes at a uniformly random phase within it."""

    def steady(self) -> bool:
        """Whether the primary alone holds the VIP (checked after the settle time, just before the crash)."""

    def start(self) -> None:
        """Run on both heads; return once the primary owns the VIP."""

    def stop(self) -> None:
        """Stop what ``start`` started (a crashed head's processes are gone already)."""

    def heard_argv(self) -> list[str]:
        """The ``failover_probe heard`` command that prints, in the standby, each heartbeat (advert) of the primary."""


@dataclass(frozen=True)
class Topology:
    """Who is who in the lab, read from the spec and the running hosts."""

    primary: str
    standby: str
    vip: str
    client: str
    client_iface: str
    compute: str
    compute_iface: str
    primary_mac: str
    standby_mac: str
    primary_private_ip: str
    standby_private_ip: str


def interface_mac(lab: Lab, host: str, iface: str) -> str:
    """The MAC of ``iface`` in ``host``, from its own kernel (a lab host shares the machine's /sys)."""
    out = lab.exec(host, ["ip", "-o", "link", "show", "dev", iface], timeout=10).stdout.split()
    return out[out.index("link/ether") + 1]


def topology(lab: Lab, spec: ClusterSpec) -> Topology:
    if spec.lab.client is None:
        raise UserError("the spec has no lab.client; add `lab: {client: {ip: ...}}` on the public network")
    computes = [n for n in all_nodes(spec) if n.role == "compute"]
    if not computes:
        raise UserError("the spec defines no compute clients; the DHCP probe needs one (add a clients: group)")
    compute = computes[0]
    primary, standby = spec.heads.primary, spec.heads.standby
    return Topology(
        primary=primary.hostname,
        standby=standby.hostname,
        vip=str(primary.alias_ip),
        client=spec.lab.client.hostname,
        client_iface=lab.host(spec.lab.client.hostname).interfaces[0].name,
        compute=compute.name,
        compute_iface=compute.interfaces[0].name,
        primary_mac=interface_mac(lab, primary.hostname, primary.public_interface),
        standby_mac=interface_mac(lab, standby.hostname, standby.public_interface),
        primary_private_ip=str(primary.private_ip),
        standby_private_ip=str(standby.private_ip),
    )


@contextlib.contextmanager
def probe(lab: Lab, host: str, argv: list[str]) -> Iterator[ProbeStream]:
    proc = lab.popen(host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stream = ProbeStream(proc)
    try:
        yield stream
    finally:
        stream.close()


def measure_crash(
    lab: Lab,
    topo: Topology,
    with_dhcp: bool,
    period_s: float = 0.0,
    *,
    heard_argv: list[str] | None = None,
    phase: float | None = None,
) -> CrashResult:
    """Crash the primary once and time the VIP (and DHCP) moving to the standby: ``phase`` (in [0, 1), random when
    None) of ``period_s`` (the heartbeat or advert interval) after a heartbeat reached the standby (``heard_argv``;
    else after any moment), a random phase as a real failure hits it, the same for every contender."""
    with contextlib.ExitStack() as stack:
        icmp = stack.enter_context(probe(lab, topo.client, icmp_argv(topo.vip, topo.client_iface, ECHO_GRID_S)))
        if icmp.wait(lambda e: e.kind == "REPLY" and e.who == topo.primary_mac, READY_TIMEOUT_S) is None:
            raise RuntimeError(f"the VIP {topo.vip} does not answer from {topo.primary} before the crash")
        dhcp = None
        if with_dhcp:
            dhcp = stack.enter_context(probe(lab, topo.compute, dhcp_argv(topo.compute_iface)))
            if dhcp.wait(lambda e: e.who == topo.primary_private_ip, READY_TIMEOUT_S) is None:
                raise RuntimeError(f"{topo.primary} serves no DHCP to {topo.compute} before the crash")
        heard = None
        delay = (random.random() if phase is None else phase) * period_s
        start = time.monotonic()
        if heard_argv is not None:
            heard = stack.enter_context(probe(lab, topo.standby, heard_argv))
            if heard.wait(lambda e: e.kind == "HEARD", READY_TIMEOUT_S) is None:
                raise RuntimeError(f"{topo.standby} hears no heartbeat of {topo.primary} before the crash")
            after = time.monotonic()  # the first heartbeat round that starts from now on: its first packet
            beat = heard.wait(lambda e: e.kind == "HEARD" and e.t > after, READY_TIMEOUT_S)
            if beat is None:
                raise RuntimeError(f"{topo.standby} stopped hearing {topo.primary} before the crash")
            start = beat.t
        time.sleep(max(0.0, start + delay - time.monotonic()))  # from the heartbeat, not from this thread's wake-up
        t0 = time.monotonic()
        lab.crash(topo.primary)
        moved = icmp.wait(lambda e: e.kind == "REPLY" and e.t > t0 and e.who == topo.standby_mac, REPLY_TIMEOUT_S)
        if moved is None:
            raise RuntimeError(f"the VIP {topo.vip} did not answer from {topo.standby} within {REPLY_TIMEOUT_S:g} s")
        # Both contenders call the peer dead after 3 silent intervals, and the last heartbeat (advert) left at
        # most one interval before the crash: an answer sooner than 2 intervals after it was not caused by it.
        before = icmp.wait(lambda e: e.kind == "REPLY" and e.t <= t0 and e.who == topo.standby_mac, 0.0)
        early = before is not None or moved.t - t0 < 2 * period_s
        dhcp_ms = None
        if dhcp is not None:
            acked = dhcp.wait(lambda e: e.t > t0 and e.who == topo.standby_private_ip, REPLY_TIMEOUT_S)
            if acked is None:
                raise RuntimeError(f"{topo.standby} served no DHCP within {REPLY_TIMEOUT_S:g} s of the crash")
            dhcp_ms = (acked.t - t0) * 1000
        last = None if heard is None else max((e.t for e in list(heard.events) if e.t <= moved.t), default=None)
        since = None if last is None else round((moved.t - last) * 1000, 1)
        announced = icmp.wait(lambda e: e.kind == "GARP" and e.t > t0 and e.who == topo.standby_mac, 0.0)
        garp = None if last is None or announced is None else round((announced.t - last) * 1000, 2)
        return CrashResult((moved.t - t0) * 1000, dhcp_ms, moved.who, t0, delay, early, since, garp)


# --- haoscar on the lab -----------------------------------------------------------------------------------------


def bench_spec(spec: ClusterSpec) -> ClusterSpec:
    """The spec the bench's lab runs: a dnsmasq DHCP service in the resource group (added when the spec has none),
    and a MAC for every compute client that has none (locally administered, from its address). With known MACs
    dnsmasq hands out fixed addresses: it would otherwise ping each free address first, and in the lab every
    address of the range answers (the clients hold theirs statically), so no offer would ever come."""
    ha = spec.ha
    if not any(s.kind == "dnsmasq" for s in ha.services):
        ha = ha.model_copy(update={"services": [*ha.services, Service(name="dhcp", kind="dnsmasq")]})
    groups = []
    for group in spec.clients:
        macs = dict(group.macs)
        for offset, name in enumerate(group_names(group)):
            ip = (group.start_ip + offset).packed
            macs.setdefault(name, "02:48:4f:" + ":".join(f"{b:02x}" for b in ip[1:]))
        groups.append(group.model_copy(update={"macs": macs}))
    return spec.model_copy(update={"ha": ha, "clients": groups})


class HaoscarPair:
    """haoscar's daemons on both heads plus the witness and lab fencing, at one of ``haoscar.scenarios.ha_lab``'s
    profiles; ``start`` returns once the primary is active (VIP and DHCP up) and the standby stands by."""

    def __init__(self, lab: Lab, spec: ClusterSpec, profile: str, **ha_overrides: Any) -> None:
        self.lab = lab
        self.spec = spec
        self.profile = profile
        # The shipped default configuration (replication, the token API; issue 15), then the bench's own.
        self.overrides = {**shipped_overrides(spec), **ha_overrides}
        self.label = f"haoscar {profile}"
        self.ha: HaLab | None = None

    @property
    def settle_s(self) -> float:
        ha = self.effective.ha
        return max(1.0, 3 * ha.dead_time)

    @property
    def period_s(self) -> float:
        return self.effective.ha.heartbeat_interval

    @property
    def effective(self) -> ClusterSpec:
        """The spec the daemons run with: the profile's timings applied."""
        return ha_spec(self.spec, profile=self.profile, **self.overrides)

    def heard_argv(self) -> list[str]:
        """Heartbeats: UDP to the heartbeat port, from the primary's address on every network that carries them."""
        primary = self.spec.heads.primary
        sources = [str(ip) for ip in (primary.public_ip, primary.private_ip, primary.heartbeat_ip) if ip is not None]
        return heard_argv(sources, 17, self.effective.ha.port)

    def start(self) -> None:
        """Start, and make sure the run begins from the initial roles: if the standby won the cold start (a busy
        machine can start it first), a switchover hands the role to the primary."""
        ha = self.ha = start_ha(self.lab, self.spec, profile=self.profile, wait=False, **self.overrides)
        try:

            def states() -> dict[str, str | None]:
                return {h: (ha.status(h, timeout=1.0) or {}).get("state") for h in (ha.primary, ha.standby)}

            if not wait_until(lambda: sorted(map(str, states().values())) == ["active", "standby"], SETTLE_TIMEOUT_S):
                raise RuntimeError(f"{self.label}: no head became active; states {states()}\n{ha.logs(ha.primary)}")
            if states()[ha.primary] != "active":
                self._hand_to_primary(states)
            ha.wait_for(ha.primary, "active", SETTLE_TIMEOUT_S)
            ha.wait_for(ha.standby, "standby", SETTLE_TIMEOUT_S)
            if self.effective.ha.replication and not wait_until(self.replication_ready, SETTLE_TIMEOUT_S, 0.1):
                raise RuntimeError(f"{self.label}: replication to {ha.standby} not in sync\n{ha.logs(ha.primary)}")
        except BaseException:
            self.stop()
            raise

    def _hand_to_primary(self, states: Callable[[], dict[str, str | None]]) -> None:
        """The standby won the cold start: ask it to switch over until it does. The standby refuses while the
        primary is not a healthy standby yet (with replication on, the primary first catches up from it, which took
        up to ~30 s on a loaded machine), so one request right after the start is often refused."""
        ha = self.running()
        deadline = time.monotonic() + 2 * SETTLE_TIMEOUT_S
        while time.monotonic() < deadline and states()[ha.primary] != "active":
            with contextlib.suppress(UserError, OSError, ValueError):
                ha.control(ha.standby, "switchover")
            wait_until(lambda: states()[ha.primary] == "active", 2.0, 0.1)

    def replication_ready(self) -> bool:
        """With replication on (the shipped default) a steady state includes a current copy on the standby: the
        active head's first full pass done, the database channel up, the standby not held stale. A crash before
        that finds a standby that rightly refuses to take over on a stale copy (seen: the first rsync of /home ran
        before the standby's tlspipe listened, and the witness then held the standby stale)."""
        ha = self.running()
        source = (ha.status(ha.primary) or {}).get("replication") or {}
        target = (ha.status(ha.standby) or {}).get("replication") or {}
        return (
            source.get("last_full_pass") is not None
            and source.get("standby_stale") is False
            and bool(source.get("db_connected"))
            and target.get("own_copy_stale") is False
        )

    def steady(self) -> bool:
        ha = self.running()
        first, second = ha.status(ha.primary), ha.status(ha.standby)
        return (
            first is not None
            and second is not None
            and first.get("state") == "active"
            and bool(first.get("vip", {}).get("held"))
            and second.get("state") == "standby"
            and not second.get("vip", {}).get("held")
        )

    def running(self) -> HaLab:
        if self.ha is None:
            raise RuntimeError(f"{self.label} is not running; start() it first")
        return self.ha

    def daemon_pids(self) -> list[int]:
        ha = self.running()
        return [ha.proc(head).pid for head in (ha.primary, ha.standby)]

    def status(self, head: str) -> dict[str, Any] | None:
        return self.running().status(head)

    def breakdown(self, t0: float, reply_ms: float) -> dict[str, float]:
        """Where one failover's time went, in ms after the crash ``t0``: the new active head's ``failover`` event
        carries its takeover's steps on the monotonic clock that every lab host shares."""
        ha = self.running()
        path = events_path(self.lab.host_dir(ha.standby) / "var/lib/haoscar")
        event: dict[str, Any] | None = None

        def found() -> bool:
            nonlocal event
            with contextlib.suppress(FileNotFoundError):
                for line in path.read_text().splitlines():
                    with contextlib.suppress(ValueError):
                        raw = json.loads(line)
                        if raw.get("kind") == "failover" and float(raw.get("mono", 0.0)) > t0:
                            event = raw
            return event is not None

        if not wait_until(found, 5.0, 0.05) or event is None:
            return {}
        steps = {name: round((at - t0) * 1000, 1) for name, at in event.get("data", {}).get("timeline", {}).items()}
        return {**steps, "first_reply_at_client": round(reply_ms, 1)}

    def stop(self) -> None:
        """SIGTERM every process ``start`` started (daemons drop the VIP and stop dnsmasq), by pid."""
        if self.ha is not None:
            self.ha.stop()
            self.ha = None


# --- idle cost of the daemon ------------------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS (a kernel thread or a zombie)")


def idle_cost(pids: list[int], seconds: float = IDLE_SAMPLE_S) -> tuple[float, float]:
    """(worst CPU % of one core over ``seconds``, worst RSS in MB) of the processes ``pids``."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {pid: _cpu_ticks(pid) for pid in pids}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    cpu = max(100.0 * (_cpu_ticks(pid) - ticks) / hz / elapsed for pid, ticks in before.items())
    return cpu, max(rss_mb(pid) for pid in pids)


# --- the whole bench --------------------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    runs: int = 5
    vs_keepalived: bool = False
    fast: bool = True
    idle_seconds: float = IDLE_SAMPLE_S
    lab_name: str = field(default_factory=lambda: f"bf{os.getpid() % 100000}")


Progress = Callable[[str], None]


def run_series(
    lab: Lab,
    topo: Topology,
    contender: Contender,
    series: Series,
    *,
    runs: int,
    with_dhcp: bool,
    note: Progress,
    phases: list[float] | None = None,
) -> None:
    """``runs`` crashes of ``contender``; run i at ``phases[i]`` of the heartbeat interval after a heartbeat (a run
    done again keeps its phase)."""
    index = 0
    while index < runs:
        note(f"{contender.label}: run {index + 1}/{runs}")
        contender.start()
        result = None
        try:
            time.sleep(contender.settle_s)
            if contender.steady():
                phase = phases[index] if phases is not None else None
                result = measure_crash(
                    lab, topo, with_dhcp, contender.period_s, heard_argv=contender.heard_argv(), phase=phase
                )
                explain = getattr(contender, "breakdown", None)
                if explain is not None and not result.early:
                    series.breakdowns.append(explain(result.t0, result.vip_ms))
        finally:
            contender.stop()
            if lab.host(topo.primary).state == "crashed":
                lab.restore(topo.primary)
        if result is not None and result.early:
            # The standby held the VIP before the crash could move it: counted (a false takeover of the
            # contender), not timed, and the run is done again.
            series.early_takeovers_ms.append(round(result.vip_ms, 1))
            if len(series.early_takeovers_ms) > max(runs, MAX_UNSTEADY_STARTS):
                raise RuntimeError(f"{contender.label}: {len(series.early_takeovers_ms)} takeovers before the crash")
            continue
        if result is None:
            # Both heads claimed the VIP after the start: a crash now would time no failover at all. Counted, and
            # the run is done again from a fresh start.
            series.unsteady_starts += 1
            if series.unsteady_starts > MAX_UNSTEADY_STARTS:
                raise RuntimeError(f"{contender.label}: {series.unsteady_starts} starts without one steady owner")
            continue
        index += 1
        series.vip_ms.append(round(result.vip_ms, 1))
        series.crash_delay_ms.append(round(result.crash_delay_s * 1000, 1))
        if result.since_heard_ms is not None:
            series.since_heard_ms.append(result.since_heard_ms)
        if result.garp_since_heard_ms is not None:
            series.garp_since_heard_ms.append(result.garp_since_heard_ms)
        series.new_owners.append(topo.standby if result.new_owner_mac == topo.standby_mac else result.new_owner_mac)
        if result.dhcp_ms is not None:
            series.dhcp_ms.append(round(result.dhcp_ms, 1))


def run_failover_bench(
    spec: ClusterSpec, state_dir: Path, options: BenchOptions, note: Progress = lambda _m: None
) -> dict[str, Any]:
    """Every series of the bench on one lab (always taken down); the JSON document ``--json`` prints."""
    if options.runs < 1:
        raise UserError(f"--runs {options.runs} must be at least 1")
    series = new_series()
    # Common random numbers: one uniformly random phase per run, the same for every series, so that each
    # contender is crashed at the same phases of its heartbeats and the medians differ by what the contenders do,
    # not by the phases each happened to draw (11 runs of independent phases moved a median by +-10 ms).
    phases = [random.random() for _ in range(options.runs)]
    idle_cpu = rss = None
    workdir = Path(tempfile.mkdtemp(prefix="haoscar-bench-failover-"))
    spec = bench_spec(spec)
    note(f"lab {options.lab_name} up")
    lab = Lab.up(spec, options.lab_name, state_dir)
    try:
        topo = topology(lab, spec)
        default = HaoscarPair(lab, spec, "default")
        note("haoscar default: idle CPU and memory")
        default.start()
        try:
            time.sleep(default.settle_s)  # idle means after the start-up work, in the steady state
            idle_cpu, rss = idle_cost(default.daemon_pids(), options.idle_seconds)
        finally:
            default.stop()
        run_series(
            lab, topo, default, series["haoscar_default"], runs=options.runs, with_dhcp=True, note=note, phases=phases
        )
        if options.fast:
            fast = HaoscarPair(lab, spec, "fast")
            run_series(
                lab, topo, fast, series["haoscar_fast"], runs=options.runs, with_dhcp=True, note=note, phases=phases
            )
        if options.vs_keepalived:
            for key, advert in KEEPALIVED_SERIES.items():
                pair = KeepalivedPair(lab, spec, advert, workdir / key, tuned=True)
                run_series(lab, topo, pair, series[key], runs=options.runs, with_dhcp=False, note=note, phases=phases)
    finally:
        note(f"lab {options.lab_name} down")
        lab.down()
    shutil.rmtree(workdir, ignore_errors=True)  # kept after a failure: keepalived's logs tell why
    return report(
        spec,
        runs=options.runs,
        vs_keepalived=options.vs_keepalived,
        series=series,
        idle_cpu=idle_cpu,
        rss=rss,
        phases=phases,
    )
