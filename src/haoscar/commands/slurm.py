"""``haoscar slurm status|sync|report``: Slurm's config from the cluster database, pushed to heads and nodes.

``sync`` (run on the active head) asks every compute node for its hardware (``slurmd -C``), renders ``slurm.conf``
(``provision.slurm_conf``), writes it here atomically, pushes it to the other head and every node through the
host transports (haoscar's ssh key, as ``complete-installation`` uses; tests and the lab hand in their own
doors), then asks the running controller to re-read it (``scontrol reconfigure``). Before anything is written, every
node must hold the cluster's munge key (same SHA-256) unless ``push_key``: a missing or different key is a clear
error naming the nodes, exit 2, nothing changed. ``report`` records a node's CPUs and memory (what the installer
reports); a name that is no node of the database is an error, nothing changed. See docs/slurm.md.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.install_complete import LocalTransport, SshTransport, Transport
from haoscar.errors import FieldError
from haoscar.provision import slurm_conf as conf
from haoscar.provision.slurm_nodes import compute_names, record_hardware, slurm_nodes
from haoscar.spec.models import ClusterSpec

SPEC_PATH = "/etc/haoscar/cluster.yaml"
CLIENT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SyncSlurm:
    spec_file: str = SPEC_PATH
    active: str | None = None
    """The active head (for the controller address of a spec without a private alias); default: the primary."""
    push_key: bool = False
    """Also write the cluster's munge key to the other head and the nodes (otherwise they must have it)."""
    ask_hardware: bool = True
    """Ask each node for ``slurmd -C`` before rendering."""
    conf_path: str = conf.CONF_PATH
    munge_key_path: str = conf.MUNGE_KEY_PATH


@dataclass(frozen=True)
class ReportHardware:
    node: str
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class SlurmStatusRequest:
    spec_file: str = SPEC_PATH
    active: str | None = None
    conf_path: str = conf.CONF_PATH


@dataclass
class SlurmSyncReport:
    conf_path: str
    controller: str
    changed: bool
    nodes: list[dict[str, Any]]
    defaults: list[str]
    """Nodes declared with the safe default hardware (they have not reported yet)."""
    key_created: bool
    pushed: list[str] = field(default_factory=list)
    key_pushed: list[str] = field(default_factory=list)
    reconfigured: bool = False
    reconfigure_output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlurmStatus:
    controller: str
    controller_up: bool
    ping: str
    nodes: list[dict[str, Any]]
    unknown: list[str]
    """Nodes Slurm reports that the database does not have."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Doors = Mapping[str, Transport]


def _spec(path: str) -> ClusterSpec:
    from haoscar.spec.loader import load_spec

    return load_spec(path)


def default_doors(env: Env, spec: ClusterSpec, here: str, nodes: list[conf.SlurmNode]) -> dict[str, Transport]:
    """This head locally; the other head and every node over ssh with haoscar's key."""
    from haoscar.provision.sshkeys import ensure_identity

    argv = ensure_identity(env.state_dir).ssh_argv()
    heads = (spec.heads.primary, spec.heads.standby)
    doors: dict[str, Transport] = {here: LocalTransport(here)}
    for head in heads:
        if head.hostname != here:
            doors[head.hostname] = SshTransport(head.hostname, str(head.private_ip), argv)
    for node in nodes:
        doors[node.name] = SshTransport(node.name, node.address, argv)
    return doors


def _key_check(doors: Doors, targets: list[str], path: str, key: bytes) -> list[str]:
    """Targets whose munge key is missing or is not the cluster's."""
    want = hashlib.sha256(key).hexdigest()
    bad = []
    for name in targets:
        code, out = doors[name].run(f"sha256sum {shlex.quote(path)} 2>/dev/null", timeout=20.0)
        if code != 0 or not out.startswith(want):
            bad.append(name)
    return bad


def _ask_hardware(env: Env, doors: Doors, nodes: list[conf.SlurmNode]) -> None:
    for node in nodes:
        door = doors.get(node.name)
        if door is None:
            continue
        code, out = door.run("slurmd -C", timeout=20.0)
        found = conf.parse_slurmd_c(out) if code == 0 else None
        if found is not None:
            with env.database.session() as session:
                record_hardware(session, node.name, *found)


def sync(
    env: Env, request: SyncSlurm, doors: Doors | None = None, here: str | None = None, root: Path = Path("/")
) -> SlurmSyncReport:
    """``doors``, ``here`` and ``root`` are the seams of the lab: its hosts' transports, the head this runs for, and
    where that head's files are seen from here (``/`` on a real head)."""
    spec = _spec(request.spec_file)
    local = here or request.active or spec.heads.primary.hostname
    with env.database.session(readonly=True) as session:
        nodes = slurm_nodes(session)
    doors = doors if doors is not None else default_doors(env, spec, local, nodes)
    targets = [name for name in doors if name != local]
    key_path = root / request.munge_key_path.lstrip("/")
    key = key_path.read_bytes() if key_path.exists() else None
    if not request.push_key:
        if key is None:
            raise FieldError(
                "push_key", f"this head has no munge key at {key_path}; sync with it to create and push one"
            )
        missing = _key_check(doors, targets, request.munge_key_path, key)
        if missing:
            raise FieldError(
                "push_key",
                f"the cluster's munge key is missing or different on {', '.join(missing)} ({request.munge_key_path});"
                " reinstall them or sync with it to push the key",
            )
    key, created = conf.ensure_munge_key(key_path)
    if request.ask_hardware:
        _ask_hardware(env, doors, nodes)
        with env.database.session(readonly=True) as session:
            nodes = slurm_nodes(session)
    controller = conf.controller_address(spec, request.active)
    text = conf.render_slurm_conf(spec.cluster.name, controller, nodes)
    changed = conf.write_slurm_conf(root / request.conf_path.lstrip("/"), text)
    report = SlurmSyncReport(
        request.conf_path,
        controller,
        changed,
        [asdict(node) for node in nodes],
        [node.name for node in nodes if not node.reported],
        created,
    )
    mkdir = "mkdir -p " + " ".join(shlex.quote(path) for path in conf.host_dirs())
    for name in targets:
        doors[name].run(mkdir)
        doors[name].write(request.conf_path, text.encode(), 0o644)
        report.pushed.append(name)
        if request.push_key:
            doors[name].write(request.munge_key_path, key, 0o400)
            doors[name].run(f"chown munge:munge {shlex.quote(request.munge_key_path)} 2>/dev/null || true")
            report.key_pushed.append(name)
    doors[local].run(mkdir)
    code, out = doors[local].run(f"SLURM_CONF={shlex.quote(request.conf_path)} scontrol reconfigure", timeout=30.0)
    report.reconfigured, report.reconfigure_output = code == 0, out
    return report


def report_hardware(env: Env, request: ReportHardware) -> bool:
    """Record what a node reported; True when it changed."""
    if request.cpus < 1:
        raise FieldError("cpus", f"{request.cpus} is not a CPU count; give at least 1")
    if request.memory_mb < 1:
        raise FieldError("memory_mb", f"{request.memory_mb} is not a memory size in MiB; give at least 1")
    with env.database.session() as session:
        if request.node not in compute_names(session):
            raise FieldError("node", f"{request.node!r} is no compute node of the database; see `haoscar node list`")
        return record_hardware(session, request.node, request.cpus, request.memory_mb)


def _slurm(env: Env, conf_path: str, *argv: str) -> tuple[int, str]:
    """A Slurm client with haoscar's config. Never without one: a client with no config looks for a controller in
    DNS SRV records (configless mode), which would send queries off the cluster."""
    if not Path(conf_path).is_file():
        return 1, f"no {conf_path}; run `haoscar slurm sync` on the active head"
    try:
        done = env.run(["env", f"SLURM_CONF={conf_path}", *argv], timeout=CLIENT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 1, f"{argv[0]} got no answer within {CLIENT_TIMEOUT_S:g} s"
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace").strip()


def parse_sinfo(text: str) -> dict[str, dict[str, Any]]:
    """``sinfo -N -h -o '%N|%T|%c|%m'`` lines by node name."""
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0]:
            found[parts[0]] = {"state": parts[1], "cpus": parts[2], "memory_mb": parts[3]}
    return found


def status(env: Env, request: SlurmStatusRequest) -> SlurmStatus:
    spec = _spec(request.spec_file)
    controller = conf.controller_address(spec, request.active)
    code, ping = _slurm(env, request.conf_path, "scontrol", "ping")
    up = code == 0 and " is UP" in ping
    sinfo: dict[str, dict[str, Any]] = {}
    if up:
        code, out = _slurm(env, request.conf_path, "sinfo", "-N", "-h", "-o", "%N|%T|%c|%m")
        sinfo = parse_sinfo(out) if code == 0 else {}
    with env.database.session(readonly=True) as session:
        nodes = slurm_nodes(session)
    rows = []
    for node in nodes:
        seen = sinfo.get(node.name, {})
        rows.append(
            {
                "name": node.name,
                "address": node.address,
                "slurm_state": seen.get("state", "unknown" if up else "no controller"),
                "cpus": node.cpus,
                "memory_mb": node.memory_mb,
                "reported": node.reported,
            }
        )
    unknown = conf.unknown_nodes(sinfo, [node.name for node in nodes])
    return SlurmStatus(controller, up, ping.splitlines()[0] if ping else "", rows, unknown)
