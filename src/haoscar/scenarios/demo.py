"""``haoscar demo`` as a function: bring the demo cluster's lab up, run the demo's acts, always tear it down.

The demo is a list of *acts*; each takes the running lab and the spec and returns what it showed as checks. The acts:
reachability across the private and public networks, then HA failover, then Slurm through a crash
(``default_acts``; ``haoscar demo`` adds ``console_act`` after reachability: the web console's URL and credentials
while the lab runs); with ``--install`` also a VM client installed over the network after a crash (``install_act``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from haoscar.lab import Lab, LabStatus, down_lab
from haoscar.lab.defaults import default_spec
from haoscar.provision.install_states import InstallState
from haoscar.spec import ClusterSpec, all_nodes, load_spec


@dataclass(frozen=True)
class Check:
    """One thing the demo proves: ``source`` can (or cannot) reach ``address`` of ``target``."""

    what: str
    source: str
    target: str
    address: str
    expected: bool
    observed: bool
    detail: str = ""  # what was measured, shown instead of reachable/unreachable

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


@dataclass(frozen=True)
class ActResult:
    title: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass
class DemoReport:
    lab: str
    status: LabStatus | None = None
    acts: list[ActResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is not None and all(a.ok for a in self.acts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "ok": self.ok,
            "status": self.status.to_dict() if self.status else None,
            "acts": [
                {"title": a.title, "ok": a.ok, "checks": [asdict(c) | {"ok": c.ok} for c in a.checks]}
                for a in self.acts
            ],
        }


@dataclass(frozen=True)
class Act:
    """A step of the demo: ``run(lab, spec)`` shows something on the running lab and returns its checks."""

    title: str
    run: Callable[[Lab, ClusterSpec], ActResult]


# Called with ("lab", LabStatus) once the lab is up, ("act-start", title) and ("act", ActResult) around each act,
# ("down", lab name) after teardown: the CLI renders these as they happen.
Observer = Callable[[str, Any], None]


def _pings(lab: Lab, host: str, address: str, expected: bool) -> bool:
    # A reachable host answers at once; an unreachable one is given a second, not the full patience.
    deadline = "3" if expected else "1"
    argv = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", deadline, address]
    return lab.exec(host, argv, check=False, timeout=15).returncode == 0


def reachability(lab: Lab, spec: ClusterSpec) -> ActResult:
    """The primary reaches a compute client on the private network and the standby on the heartbeat one; the user
    reaches the primary on the public network; the user can NOT reach the private network."""
    nodes = all_nodes(spec)
    primary, standby = nodes[0], nodes[1]
    computes = [n for n in nodes if n.role == "compute"]
    plan: list[tuple[str, str, str, str, bool]] = []  # what, source, target, address, expected

    def address(node_name: str, network: str) -> str | None:
        return lab.host(node_name).address_on(network)

    if computes and (ip := address(computes[0].name, "private")):
        plan.append(("private network: head to compute client", primary.name, computes[0].name, ip, True))
    if ip := address(standby.name, "heartbeat"):
        plan.append(("heartbeat network: head to head", primary.name, standby.name, ip, True))
    user = spec.lab.client.hostname if spec.lab.client else None
    if user is not None:
        if ip := address(primary.name, "public"):
            plan.append(("public network: user to head", user, primary.name, ip, True))
        if ip := address(primary.name, "private"):
            plan.append(("user cannot reach the private network (head)", user, primary.name, ip, False))
        if computes and (ip := address(computes[0].name, "private")):
            plan.append(("user cannot reach a compute client", user, computes[0].name, ip, False))
    checks = [Check(w, s, t, a, e, _pings(lab, s, a, e)) for w, s, t, a, e in plan]
    return ActResult(REACHABILITY, checks)


REACHABILITY = "Reachability across the private and public networks"
FAILOVER = "HA: the primary crashes, the standby takes over, the role is switched back"


def failover_act(console: Console) -> Act:
    """The HA act: live status, a primary crash with the measured failover time, restore, switch back."""

    def run(lab: Lab, spec: ClusterSpec) -> ActResult:
        from haoscar.scenarios.demo_failover import run_failover_act

        primary, standby = spec.heads.primary.hostname, spec.heads.standby.hostname
        vip = str(spec.heads.primary.alias_ip)
        measured = run_failover_act(lab, spec, console)
        took, double, back = measured["failover_ms"], measured["double_ownership_ms"], measured["switchback_ms"]
        checks = [
            Check(
                "the standby owns the alias IP after the crash",
                primary,
                standby,
                vip,
                True,
                took is not None,
                f"after {took} ms" if took is not None else "never",
            ),
            Check(
                "never two owners of the alias IP",
                primary,
                standby,
                vip,
                True,
                double == 0,
                f"{double} ms with two owners",
            ),
            Check("switched back to the primary", standby, primary, vip, True, back is not None, f"after {back} ms"),
        ]
        return ActResult(FAILOVER, checks)

    return Act(FAILOVER, run)


CLUSTER = "The cluster through a head crash: Slurm jobs keep running, the queue answers from the new head"


def cluster_act(console: Console) -> Act:
    """The Slurm act of ``haoscar demo`` (``make demo``): the checks of ``demo_cluster.run_cluster_act``."""

    def run(lab: Lab, spec: ClusterSpec) -> ActResult:
        from haoscar.scenarios.demo_cluster import PRIVATE_ALIAS, run_cluster_act

        measured = run_cluster_act(lab, spec, console)
        primary, standby = measured["primary"], measured["standby"]
        ready, jobs, ran = measured["ready_ms"], measured["submitted"], measured["ran"]
        twice = len(ran) - len(set(ran))
        missing = sorted(set(jobs) - set(ran))
        checks = [
            Check(
                "squeue answers from the new head through the private alias", standby, standby, PRIVATE_ALIAS,
                True, ready is not None, f"after {ready} ms" if ready is not None else "never",
            ),
            Check(
                "every job submitted before the crash ran, once", standby, "compute", PRIVATE_ALIAS, True,
                not missing and twice == 0, f"{len(jobs) - len(missing)}/{len(jobs)} ran, {twice} twice",
            ),
            Check(
                "slurmctld never on both heads", primary, standby, PRIVATE_ALIAS, True,
                measured["both_samples"] == 0, f"{measured['both_samples']} of {measured['samples']} samples",
            ),
        ]  # fmt: skip
        return ActResult(CLUSTER, checks)

    return Act(CLUSTER, run)


CONSOLE = "The web console on the public alias: its URL and an admin's credentials, login required"


def console_act(console: Console) -> Act:
    """HA with the web console (scenarios/web_demo.py): its URL, admin and password and the browser command are
    printed while the lab runs; the client host gets the login page, and a page that sends it to the login."""

    def run(lab: Lab, spec: ClusterSpec) -> ActResult:
        from haoscar.scenarios.web_demo import connection_lines, run_console_act

        def show(weblab: Any) -> None:
            for label, value in connection_lines(weblab):
                console.print(f"[bold]{label:>9}[/] {value}", soft_wrap=True)

        seen = run_console_act(lab, spec, show)
        url, client, head = seen["url"], seen["client"], seen["head"]
        login, dashboard = seen["login"], seen["dashboard"]
        redirected = dashboard["status"] in (302, 303) and str(dashboard["location"]).startswith("/login")
        checks = [
            Check("the login page over TLS (cluster CA)", client, head, f"{url}/login", True,
                  login["status"] == 200, f"HTTP {login['status']} {login.get('error') or ''}".strip()),
            Check("the dashboard needs a login", client, head, f"{url}/dashboard", True, redirected,
                  f"HTTP {dashboard['status']} -> {dashboard['location']}"),
        ]  # fmt: skip
        return ActResult(CONSOLE, checks)

    return Act(CONSOLE, run)


def default_acts(console: Console, install_state_dir: Path | None = None, slurm: bool = False) -> list[Act]:
    """The demo's acts; with ``slurm`` (``haoscar demo``, ``make demo``) the cluster act (Slurm through a crash,
    scenarios/demo_cluster.py); with ``install_state_dir`` (``haoscar demo --install``) then also the network install
    act after a crash, which caches the installer's kernel under ``install_state_dir/cache/installer``. Each act
    starts its own HA session on the same lab: the install act's is the third, after two crashes."""
    acts = [Act(REACHABILITY, reachability), failover_act(console)]
    if slurm:
        acts.append(cluster_act(console))
    if install_state_dir is not None:
        acts.append(install_act(console, install_state_dir))
    return acts


INSTALL = "Network install after a head crash: a VM client installs from the new head, boots from its disk"
DEMO_MAC = "52:54:00:5e:de:01"


def install_act(console: Console, state_dir: Path) -> Act:
    """The active head crashes; a qemu VM takes the first compute client's place (its namespace stand-in is switched
    off), network-boots from the new active head (scenarios/demo_install.py), installs the tiny image with the install
    monitor's progress on screen, powers off, boots from its own disk and answers the new head with its host name
    and address. The installer's kernel is cached under ``state_dir/cache/installer``."""

    def run(lab: Lab, spec: ClusterSpec) -> ActResult:
        from haoscar.scenarios.demo_install import run_install_after_crash

        node = next(n for n in all_nodes(spec) if n.role == "compute")
        ip = str(next(i.ip for i in node.interfaces if i.network == "private"))
        cache = state_dir / "cache" / "installer"
        seen = run_install_after_crash(lab, spec, console, cache_dir=cache, mac=DEMO_MAC, watch=_watch_install)
        new, state, marker = seen["new"], seen["state"], seen["marker"]
        installed = state == InstallState.INSTALLED
        checks = [
            Check(
                "installed over the network", new, node.name, ip, True, installed,
                f"{state}, next boot {seen['boot_mode']}, {seen['took_s']:.0f} s",
            ),
            Check(
                "the installer's head is the private alias of the new head", seen["old"], new, seen["alias"], True,
                seen["via_alias"],
            ),
            Check("booted from its own disk and answers ping", new, node.name, ip, True, seen["answered"]),
            Check(
                "its marker names its host and address", new, node.name, ip, True,
                f"host={node.name} ip={ip}" in marker, marker.strip()[:60] or "no answer",
            ),
        ]  # fmt: skip
        return ActResult(INSTALL, checks)

    return Act(INSTALL, run)


def _watch_install(console: Console, state: Path, node: str, vm: Any, timeout: float = 300.0) -> str:
    """The install monitor's view of one node (Rich progress) until the VM powers off; the node's final state."""
    from rich.progress import BarColumn, Progress, TextColumn

    from haoscar.commands.wiring import open_cluster_database
    from haoscar.db.models import Node
    from haoscar.provision import install_progress

    bars = Progress(
        TextColumn(f"{node:<8}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[info]}"), console=console,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    with bars:
        task = bars.add_task("", total=100, info="network-booting (firmware, iPXE, installer kernel)")
        while time.monotonic() < deadline and vm.wait(0.5) is None:
            live = install_progress.read_one(state, node)
            if live is not None:
                rate = f" {live.rate / 1e6:.1f} MB/s" if live.stage == "image" and live.rate else ""
                info = f"{live.stage}{rate} {live.elapsed(time.monotonic()):.0f} s"
                bars.update(task, completed=live.percent, info=info)
        live = install_progress.read_one(state, node)
        if live is not None:
            bars.update(task, completed=live.percent, info=f"{live.state} ({live.stage})")
    db = open_cluster_database(state, upgrade=False)
    try:
        with db.session() as session:
            row = session.query(Node).filter_by(name=node).one()
            failed = row.install_state == InstallState.FAILED
            return f"failed: {row.install_detail}" if failed else str(row.install_state)
    finally:
        db.close()


def load_demo_spec(spec_file: Path | None) -> ClusterSpec:
    return default_spec() if spec_file is None else load_spec(spec_file)


def run_demo(
    spec: ClusterSpec,
    state_dir: Path,
    name: str = "demo",
    acts: Sequence[Act] | None = None,
    observe: Observer | None = None,
) -> DemoReport:
    """Bring the lab up, run every act, and take the lab down whatever happens (errors, Ctrl-C)."""
    notify: Observer = observe or (lambda kind, payload: None)
    down_lab(name, state_dir)  # a demo killed hard last time may have left its lab behind
    report = DemoReport(name)
    lab = Lab.up(spec, name, state_dir)
    try:
        report.status = lab.status()
        notify("lab", report.status)
        for act in acts if acts is not None else default_acts(Console(stderr=True)):
            notify("act-start", act.title)
            result = act.run(lab, spec)
            report.acts.append(result)
            notify("act", result)
    finally:
        lab.down()
        notify("down", name)
    return report
