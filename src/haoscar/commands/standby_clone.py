"""The standby head cloned from the primary: the HA-OSCAR walkthrough's steps as one guided, resumable flow.

    fetch     Fetch Image of the primary (golden client) into ``serverimage``
    add       Add Standby Server (from the spec's ``heads.standby``)
    netboot   Setup Network Boot for the standby
    mac       Collect MAC Address / Assign MAC to Node
    dhcp      Configure DHCP Server (dnsmasq) and check the boot server answers
    install   the standby network-boots and installs: wait until it reports ``installed``
    complete  Complete Installation (``install_complete``): HA configured and started on both heads

Each step is a function of the environment that returns a one-line detail or raises ``UserError`` (the flow
stops there, with the message) or ``Waiting`` (the flow stops and tells what the operator must do, e.g. power the
standby on). Steps that finished are recorded in ``STATE/standby-clone.json``; running the flow again resumes
after them.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from haoscar.commands.wiring import open_cluster_database as open_database  # replicated on a head
from haoscar.db.models import Interface, Node
from haoscar.db.session import Database, record_event
from haoscar.errors import FieldError, UserError, ref
from haoscar.fsutil import atomic_write
from haoscar.provision.install_states import InstallState, set_install_state
from haoscar.spec import ClusterSpec, load_spec

STEPS: tuple[tuple[str, str], ...] = (
    ("fetch", "Fetch Image of the primary"),
    ("add", "Add Standby Server"),
    ("netboot", "Setup Network Boot"),
    ("mac", "Collect / Assign MAC"),
    ("dhcp", "Configure DHCP Server"),
    ("install", "Standby network-boots and installs"),
    ("complete", "Complete Installation"),
)
PROGRESS_FILE = "standby-clone.json"


class Waiting(Exception):
    """The flow cannot go on until something outside it happens (the standby is powered on)."""


@dataclass(frozen=True)
class CloneOptions:
    spec_file: Path
    golden_client: str | None = None  # default: the primary's private IP
    source_root: str = "/"
    ssh_user: str = "root"
    ssh_port: int = 22
    exclude_file: Path | None = None
    standby_mac: str | None = None  # None: collect it from the standby's DHCP requests
    interface: str | None = None  # where MACs are collected [default: the primary's private interface]
    collect_timeout: float = 120.0
    wait_install: float = 1800.0
    start_command: str = ""
    ha_wait: float = 60.0
    restart: bool = False


@dataclass
class StepResult:
    step: str
    title: str
    status: str  # done | earlier | waiting | failed
    detail: str
    seconds: float = 0.0


@dataclass
class CloneReport:
    steps: list[StepResult] = field(default_factory=list)
    complete: Any = None  # CompleteResult of the last step

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.status in ("done", "earlier") for s in self.steps)

    @property
    def waiting(self) -> bool:
        return bool(self.steps) and self.steps[-1].status == "waiting"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "waiting": self.waiting,
            "steps": [asdict(s) for s in self.steps],
            "complete": self.complete.as_dict() if self.complete is not None else None,
        }


# Called with ("step-start", (step, title)), ("step", StepResult) and ("install", (stage, percent, detail)).
Observer = Callable[[str, Any], None]


@dataclass
class CloneEnv:
    state_dir: Path
    spec: ClusterSpec
    spec_text: bytes
    options: CloneOptions
    observe: Observer

    @property
    def standby(self) -> str:
        return self.spec.heads.standby.hostname

    def db(self) -> Database:
        return open_database(self.state_dir)


# ---------------------------------------------------------------------------------------------------- steps


def _fetch(env: CloneEnv) -> str:
    from haoscar.provision.images import FetchRequest, ImageStore

    image = env.spec.heads.standby.image or "serverimage"
    golden = env.options.golden_client or str(env.spec.heads.primary.private_ip)
    meta = ImageStore(env.state_dir).fetch(
        FetchRequest(
            name=image,
            golden_client=golden,
            ssh_user=env.options.ssh_user,
            ssh_port=env.options.ssh_port,
            source_root=env.options.source_root,
            ip_assignment="static",
            post_install="beep",
            exclude_file=env.options.exclude_file,
        )
    )
    return f"{image} version {meta.version} from {golden}: {meta.files} files, {meta.bytes / 1e6:.1f} MB"


def _add(env: CloneEnv) -> str:
    from haoscar.commands.standby import StandbyServer, add_standby

    head = env.spec.heads.standby
    db = env.db()
    try:
        with db.session(readonly=True) as session:
            existing = session.scalar(select(Node).where(Node.name == head.hostname))
            if existing is not None and existing.role == "standby":
                return f"{head.hostname} is already defined as the standby head"
        row = add_standby(
            db,
            StandbyServer(
                alias_ip=str(head.alias_ip),
                local_ip=str(head.private_ip),
                image=head.image or "serverimage",
                primary_public_interface=env.spec.heads.primary.public_interface,
                standby_public_interface=head.public_interface,
                netmask=str(head.netmask),
                gateway=str(head.gateway) if head.gateway else None,
                hostname=head.hostname,
                public_ip=str(head.public_ip) if head.public_ip else None,
                private_interface=head.private_interface,
            ),
        )
    finally:
        db.close()
    return f"{row.name}: local IP {row.ip}, alias IP {head.alias_ip}, image {row.image}"


def _netboot(env: CloneEnv) -> str:
    from haoscar.commands.nodes import set_nodes
    from haoscar.provision.netboot_sync import netboot_sync

    db = env.db()
    try:
        result = set_nodes(db, env.standby, boot_mode="netboot")
        netboot_sync(db, env.state_dir, nodes={env.standby})
    finally:
        db.close()
    return f"{env.standby} boots from the network" + ("" if result.changed else " (it already did)")


def _standby_mac(db: Database, node: str) -> str | None:
    with db.session(readonly=True) as session:
        return session.scalar(select(Interface.mac).join(Node).where(Node.name == node, Interface.network == "private"))


def _mac(env: CloneEnv) -> str:
    from haoscar.provision.netboot_macs import assign_macs, checked_mac
    from haoscar.provision.netboot_sync import netboot_sync

    db = env.db()
    try:
        current = _standby_mac(db, env.standby)
        wanted = checked_mac(env.options.standby_mac, "standby_mac") if env.options.standby_mac else None
        if wanted is None and current is not None:
            return f"{env.standby} already has MAC {current}"
        if wanted is None:
            from haoscar.provision.mac_collect import collect

            interface = env.options.interface or env.spec.heads.primary.private_interface
            seen = collect(db, env.state_dir, interface, timeout=env.options.collect_timeout, stop_after=1).sightings
            if not seen:
                raise FieldError(
                    "standby_mac",
                    f"no DHCP request from an unknown MAC on {interface} within {env.options.collect_timeout:g} s; "
                    f"power {env.standby} on with network boot first, or give {ref('standby_mac')}",
                    sep=None,
                )
            wanted = seen[0].request.mac
        if wanted == current:
            return f"{env.standby} already has MAC {current}"
        assign_macs(db, [(env.standby, wanted, "standby clone")])
        netboot_sync(db, env.state_dir, nodes={env.standby})
    finally:
        db.close()
    return f"{wanted} assigned to {env.standby}"


def _boot_server_url(db: Database) -> str:
    from haoscar.provision.netboot_snapshot import read_settings

    with db.session(readonly=True) as session:
        return read_settings(session).server_url


def _dhcp(env: CloneEnv) -> str:
    from haoscar.provision import dhcp_server
    from haoscar.provision.netboot_files import NetbootPaths
    from haoscar.provision.netboot_sync import netboot_sync

    paths = NetbootPaths.under(env.state_dir)
    db = env.db()
    try:
        report = netboot_sync(db, env.state_dir)
        url = _boot_server_url(db)
    finally:
        db.close()
    pid, action = dhcp_server.ensure_running(
        paths, main_changed=report.main_changed, reloaded=report.reloaded_pid is not None
    )
    try:
        with urllib.request.urlopen(f"{url}/boot.ipxe", timeout=3) as response:
            response.read()
    except OSError as exc:
        raise UserError(
            f"dnsmasq {action} (pid {pid}), but the boot server does not answer at {url} ({exc}); start it with "
            f"`haoscar netboot serve --bind {url.split('//')[1].split(':')[0]}` and run this command again"
        ) from None
    return f"dnsmasq {action} (pid {pid}); boot server answers at {url}"


def _install_state(db: Database, node: str) -> tuple[str, str]:
    with db.session(readonly=True) as session:
        row = session.execute(select(Node.install_state, Node.install_detail).where(Node.name == node)).one()
        return str(row[0]), str(row[1])


def _install(env: CloneEnv) -> str:
    from haoscar.provision import install_progress

    deadline = time.monotonic() + env.options.wait_install
    db = env.db()
    try:
        while True:
            install_progress.expire_stalled(db, env.state_dir)
            state, detail = _install_state(db, env.standby)
            live = install_progress.read_one(env.state_dir, env.standby)
            if live is not None:
                env.observe("install", (live.stage, live.percent, live.detail))
            if state in ("installed", "up"):
                took = f" in {live.seconds:.0f} s" if live is not None and live.seconds else ""
                return f"{env.standby} installed{took}; it boots from its disk from now on"
            if state == "failed":
                raise UserError(
                    f"{env.standby} failed to install: {detail}; fix it and network-boot {env.standby} again, "
                    "then run this command again"
                )
            if time.monotonic() >= deadline:
                mac = _standby_mac(db, env.standby)
                where = f"is {state}" if state in ("netboot", "installing") else "has not started installing"
                raise Waiting(
                    f"{env.standby} {where}: power it on with network boot (MAC {mac}); "
                    "then run this command again to go on"
                )
            time.sleep(0.5)
    finally:
        db.close()


def _complete(env: CloneEnv) -> str:
    from haoscar.commands.install_complete import (
        SYSTEMD_START,
        complete_installation,
        http_status,
        ssh_transports,
    )

    result = complete_installation(
        env.spec,
        env.spec_text,
        ssh_transports(env.spec, env.state_dir, env.options.ssh_user, env.options.ssh_port),
        status=http_status(env.spec.ha.status_port),
        start_command=env.options.start_command or SYSTEMD_START,
        wait_s=env.options.ha_wait,
        progress=lambda what: env.observe("complete", what),
    )
    env.observe("complete-result", result)
    if not result.ready:
        raise UserError(
            f"HA did not come up: primary {result.primary_state or 'no answer'}, standby "
            f"{result.standby_state or 'no answer'} after {result.seconds} s; see `haoscar ha status`"
        )
    mark_up(env.state_dir, env.standby)
    return f"primary {result.primary_state}, standby {result.standby_state} ({result.seconds} s)"


RUNNERS: dict[str, Callable[[CloneEnv], str]] = {
    "fetch": _fetch,
    "add": _add,
    "netboot": _netboot,
    "mac": _mac,
    "dhcp": _dhcp,
    "install": _install,
    "complete": _complete,
}


def mark_up(state_dir: Path, node: str) -> bool:
    """An installed node was seen alive (its HA daemon answers): ``up``. Returns whether it changed."""
    db = open_database(state_dir)
    try:
        with db.session() as session:
            row = session.scalar(select(Node).where(Node.name == node))
            if row is None or row.install_state != InstallState.INSTALLED:
                return False
            set_install_state(row, InstallState.UP)
            record_event(session, "node.up", f"{node} is up", node)
            return True
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------------- runner


def _progress_path(state_dir: Path) -> Path:
    return state_dir / PROGRESS_FILE


def _done_steps(state_dir: Path, spec_file: Path) -> list[str]:
    try:
        data = json.loads(_progress_path(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return []
    if data.get("spec") != str(spec_file.resolve()):
        return []  # another cluster spec: start over
    return [str(s) for s in data.get("done", [])]


def _record(state_dir: Path, spec_file: Path, done: list[str]) -> None:
    atomic_write(_progress_path(state_dir), json.dumps({"spec": str(spec_file.resolve()), "done": done}) + "\n")


def run_clone(state_dir: Path, options: CloneOptions, observe: Observer | None = None) -> CloneReport:
    """Run the steps in order from the first one not done yet; stop at the first failure or wait."""
    notify: Observer = observe or (lambda kind, payload: None)
    spec = load_spec(options.spec_file)
    env = CloneEnv(state_dir, spec, options.spec_file.read_bytes(), options, notify)
    done = [] if options.restart else _done_steps(state_dir, options.spec_file)
    report = CloneReport()

    def on_complete(kind: str, payload: Any) -> None:
        if kind == "complete-result":
            report.complete = payload
        notify(kind, payload)

    env.observe = on_complete
    for step, title in STEPS:
        if step in done and step != "complete":
            result = StepResult(step, title, "earlier", "done in an earlier run")
            report.steps.append(result)
            notify("step", result)
            continue
        notify("step-start", (step, title))
        started = time.monotonic()
        try:
            detail = RUNNERS[step](env)
            status = "done"
        except Waiting as exc:
            detail, status = str(exc), "waiting"
        except UserError as exc:
            detail, status = str(exc), "failed"
        result = StepResult(step, title, status, detail, round(time.monotonic() - started, 2))
        report.steps.append(result)
        notify("step", result)
        if status != "done":
            break
        if step not in done:
            done.append(step)
            _record(state_dir, options.spec_file, done)
    return report
