"""HA-OSCAR's *Complete Installation*: the HA configuration written on both heads and the witness, HA started,
and the wait until the primary is active and the standby ready.

What each host receives (``/etc/haoscar`` unless the spec says otherwise):

- ``cluster.yaml``: the cluster spec, byte for byte (it carries the witness, the services and the replicated paths);
- the keys per purpose (``keys/`` beside ``ha.key_file``, 0600, ``commands/key_plan.py``): the heartbeat, lease and
  replication keyrings on both heads, the lease keyring only on the witness; generated once, the primary's existing
  keys are kept (an older single ``ha.key`` is split), so a second run changes nothing;
- on the heads only, ``tls/`` beside ``ha.api_token_file`` (0700): the cluster CA's ``ca.crt`` and the head's own
  ``HEAD.crt`` / ``HEAD.key`` (0600) for the token API and the encrypted replication channels; the CA key
  ``ca.key`` (0600) stays on the primary only (``commands/cluster_tls.py``);
- only when HA is started through systemd (the default): ``/etc/default/haoscar-ha`` on the heads
  (``HAOSCAR_NODE=...``) and the units ``haoscar-ha.service`` / ``haoscar-witness.service`` shipped in
  ``haoscar/data``. With another ``--start-command`` (the lab's) nothing is written outside ``/etc/haoscar``.

The command runs on the primary: its own files are written locally, the standby's and the witness's over ssh with
haoscar's own key (``STATE/ssh/id_ed25519``, the one ``image fetch`` uses). Both go through :class:`Transport`, the
seam the lab test drives for real (sshd in lab hosts). A daemon that is already running is never restarted:
only what is missing is started, so the command is idempotent.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from haoscar.commands.cluster_tls import plan_tls
from haoscar.commands.key_plan import plan_keys
from haoscar.errors import UserError
from haoscar.keys import write_secret
from haoscar.spec.models import ClusterSpec

SPEC_PATH = "/etc/haoscar/cluster.yaml"
DEFAULTS_PATH = "/etc/default/haoscar-ha"
UNIT_DIR = "/etc/systemd/system"
SYSTEMD_START = "systemctl daemon-reload && systemctl enable --now haoscar-{what}.service"
# ``{run}`` is the daemon's own command line (``ha run --node NAME --spec PATH`` or ``witness run --spec PATH``);
# ``{what}`` is ``ha`` or ``witness``; ``{node}`` the host's name.
PLACEHOLDERS = ("{run}", "{what}", "{node}")


class Transport(Protocol):
    """The door to one host's files and commands."""

    host: str

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def write(self, path: str, data: bytes, mode: int) -> None:
        """Replace the file atomically with ``data`` and ``mode`` (parents made as needed)."""

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run a shell command there: its exit status and output (stdout + stderr)."""


@dataclass
class LocalTransport:
    """The host this command runs on (the primary)."""

    host: str

    def read(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes, mode: int) -> None:
        # Mode set before the data, an unpredictable O_EXCL temporary name, no symlink of another user followed:
        # a key or the spec's fence passwords are never readable by others, not even for a moment.
        write_secret(Path(path), data, mode=mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        done = subprocess.run(
            ["sh", "-c", command],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode, (done.stdout + done.stderr).strip()


@dataclass
class SshTransport:
    """Another host over ssh: ``ssh_argv`` is haoscar's ssh with its key (``SshIdentity.ssh_argv``)."""

    host: str
    address: str
    ssh_argv: list[str]
    user: str = "root"

    def _ssh(self, command: str, data: bytes | None, timeout: float) -> subprocess.CompletedProcess[bytes]:
        argv = [*self.ssh_argv, f"{self.user}@{self.address}", command]
        try:
            return subprocess.run(
                argv, input=data if data is not None else b"", capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise UserError(f"ssh to {self.host} ({self.address}) did not finish within {timeout:g} s") from None

    def _checked(self, command: str, data: bytes | None = None, timeout: float = 30.0) -> bytes:
        done = self._ssh(command, data, timeout)
        if done.returncode == 255:
            raise UserError(
                f"cannot reach {self.host} over ssh at {self.user}@{self.address}: "
                f"{done.stderr.decode(errors='replace').strip() or 'no answer'}; add haoscar's key "
                "(`haoscar image ssh-key`) to its authorized_keys"
            )
        if done.returncode != 0:
            raise UserError(
                f"{self.host}: `{command}` failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout

    def read(self, path: str) -> bytes | None:
        quoted = shlex.quote(path)
        done = self._ssh(f"if [ -e {quoted} ]; then cat {quoted}; else exit 3; fi", None, 30.0)
        if done.returncode == 3:
            return None
        if done.returncode != 0:
            self._checked(f"cat {quoted}")  # raises the clear error
        return done.stdout

    def write(self, path: str, data: bytes, mode: int) -> None:
        target = shlex.quote(path)
        parent = shlex.quote(str(Path(path).parent))
        template = shlex.quote(f"{Path(path).parent}/.{Path(path).name}.XXXXXXXX")  # mktemp: O_EXCL, unpredictable
        self._checked(
            f'umask 077 && mkdir -p {parent} && tmp=$(mktemp {template}) && cat > "$tmp" && chmod {mode:o} "$tmp" '
            f'&& mv -f "$tmp" {target}',
            data,
        )

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        done = self._ssh(command, None, timeout)
        if done.returncode == 255:
            self._checked(command)
        return done.returncode, (done.stdout + done.stderr).decode(errors="replace").strip()


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Host:
    name: str
    role: str  # primary | standby | witness
    address: str  # where ssh and the status endpoint reach it (a cluster address)


def hosts_of(spec: ClusterSpec) -> list[Host]:
    heads = spec.heads
    found = [
        Host(heads.primary.hostname, "primary", str(heads.primary.private_ip)),
        Host(heads.standby.hostname, "standby", str(heads.standby.private_ip)),
    ]
    if spec.ha.witness is not None:
        found.append(Host(spec.ha.witness.hostname, "witness", str(spec.ha.witness.addresses[0])))
    return found


def _unit(name: str) -> bytes:
    return resources.files("haoscar.data").joinpath(name).read_bytes()


def _valid_key(data: bytes | None) -> bool:
    if data is None:
        return False
    text = data.decode(errors="replace").strip()
    try:
        return len(bytes.fromhex(text)) >= 16
    except ValueError:
        return len(text.encode()) >= 16


@dataclass(frozen=True)
class FileWrite:
    host: str
    path: str
    data: bytes
    mode: int


def plan_files(spec: ClusterSpec, spec_text: bytes, *, systemd: bool) -> list[FileWrite]:
    """The spec and the units each host must hold after Complete Installation (keys: ``commands.key_plan``)."""
    writes: list[FileWrite] = []
    for host in hosts_of(spec):
        writes.append(FileWrite(host.name, SPEC_PATH, spec_text, 0o600))  # fence passwords: root only
        what = "witness" if host.role == "witness" else "ha"
        # The systemd units and their environment file only when HA is started through systemd: with another
        # start command (the lab's), everything stays in /etc/haoscar.
        if systemd and what == "ha":
            defaults = f"# Written by haoscar install complete.\nHAOSCAR_NODE={host.name}\n".encode()
            writes.append(FileWrite(host.name, DEFAULTS_PATH, defaults, 0o644))
        if systemd:
            writes.append(
                FileWrite(host.name, f"{UNIT_DIR}/haoscar-{what}.service", _unit(f"haoscar-{what}.service"), 0o644)
            )
    return writes


# ------------------------------------------------------------------------------------------------ results


@dataclass
class HostResult:
    host: str
    role: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    started: bool = False
    was_running: bool = False
    state: str | None = None  # the daemon's HA state at the end (heads)


@dataclass
class CompleteResult:
    hosts: list[HostResult]
    key_generated: bool
    primary_state: str | None
    standby_state: str | None
    seconds: float
    ready: bool
    local_status: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.key_generated or any(h.written or h.started for h in self.hosts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("local_status")
        data["changed"] = self.changed
        return data


StatusReader = Callable[[Host], dict[str, Any] | None]
Progress = Callable[[str], None]


def http_status(port: int, timeout: float = 1.0) -> StatusReader:
    """A head's status from its read-only ``GET /status`` (``ha.status_port``), None when it does not answer."""

    def read(host: Host) -> dict[str, Any] | None:
        import json

        try:
            with urllib.request.urlopen(f"http://{host.address}:{port}/status", timeout=timeout) as response:
                data = json.loads(response.read() or b"{}")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "state" in data else None

    return read


def _running(transport: Transport, port: int) -> bool:
    # A daemon holds its UDP port (heads: heartbeats, witness: leases) in its host's network namespace; asking
    # the socket table, not the process list, is right on a real host and in a lab host alike.
    code, output = transport.run(f"ss -Hlun 'sport = :{port}'")
    return code == 0 and bool(output.strip())


def _start_command(template: str, host: Host) -> str:
    what = "witness" if host.role == "witness" else "ha"
    run = f"witness run --spec {SPEC_PATH}" if what == "witness" else f"ha run --node {host.name} --spec {SPEC_PATH}"
    return template.replace("{run}", run).replace("{what}", what).replace("{node}", host.name)


def complete_installation(
    spec: ClusterSpec,
    spec_text: bytes,
    transports: dict[str, Transport],
    *,
    status: StatusReader,
    start_command: str = SYSTEMD_START,
    wait_s: float = 60.0,
    progress: Progress | None = None,
) -> CompleteResult:
    """Write the HA configuration on every host, start what is not running, wait for an active primary and a
    ready standby. ``transports`` maps each host name (``hosts_of(spec)``) to its door."""
    say: Progress = progress or (lambda what: None)
    started_at = time.monotonic()
    hosts = _checked_hosts(spec, transports)
    results = {h.name: HostResult(h.name, h.role) for h in hosts}
    run = _Run(spec, transports, hosts, results, start_command, say)
    generated = _write_configuration(run, spec_text)
    _start_daemons(run, status, wait_s)
    primary, standby = hosts[0], hosts[1]
    say("waiting for an active primary and a ready standby")
    states: dict[str, str | None] = {}

    def ready() -> bool:
        for head in (primary, standby):
            seen = status(head)
            states[head.name] = seen.get("state") if seen else None
        return states[primary.name] == "active" and states[standby.name] == "standby"

    ok = _wait(ready, wait_s)
    for head in (primary, standby):
        results[head.name].state = states.get(head.name)
    return CompleteResult(
        hosts=list(results.values()),
        key_generated=generated,
        primary_state=states.get(primary.name),
        standby_state=states.get(standby.name),
        seconds=round(time.monotonic() - started_at, 2),
        ready=ok,
        local_status=status(primary),
    )


def _checked_hosts(spec: ClusterSpec, transports: dict[str, Transport]) -> list[Host]:
    hosts = hosts_of(spec)
    missing = [h.name for h in hosts if h.name not in transports]
    if missing:
        raise UserError(f"no way to reach {', '.join(missing)}; give an address for each head and the witness")
    if spec.heads.primary.alias_ip != spec.heads.standby.alias_ip:
        raise UserError("the heads' alias_ip differ; the standby's public alias IP must be the primary's")
    return hosts


@dataclass(frozen=True)
class _Run:
    """One Complete Installation: the spec, the doors to the hosts, and the results being gathered."""

    spec: ClusterSpec
    transports: dict[str, Transport]
    hosts: list[Host]
    results: dict[str, HostResult]
    start_command: str
    say: Progress


def _write_configuration(run: _Run, spec_text: bytes) -> bool:
    """Every file each host must hold (spec, per-purpose keys, TLS, units); returns whether a key was made.

    Keys per purpose (issue 10, finding 2): both heads get the heartbeat, lease and replication keyrings, the
    witness only the lease keyring, and a shared ``ha.key_file`` the witness still holds from an older release
    is removed there."""
    spec, transports, hosts, results, say = run.spec, run.transports, run.hosts, run.results, run.say
    primary = hosts[0]
    say(f"reading the HA keys on {primary.name}")
    keys = plan_keys(spec, transports[primary.name].read, [(h.name, h.role) for h in hosts])
    key_writes = [FileWrite(k.host, k.path, k.data, k.mode) for k in keys.files]
    systemd = run.start_command == SYSTEMD_START
    plan = [*plan_files(spec, spec_text, systemd=systemd), *key_writes, *plan_tls(spec, transports, FileWrite)]
    for write in plan:
        transport = transports[write.host]
        if transport.read(write.path) == write.data:
            results[write.host].unchanged.append(write.path)
            if write.mode == 0o600:
                # An older release wrote some of these 0644 (the spec with its fence passwords): narrowed even
                # when the content is the same.
                transport.run(f"chmod 600 {shlex.quote(write.path)}")
            continue
        say(f"writing {write.path} on {write.host}")
        transport.write(write.path, write.data, write.mode)
        results[write.host].written.append(write.path)
    for name in keys.remove_shared_from:
        shared = str(spec.ha.key_file)
        if transports[name].read(shared) is not None:
            say(f"removing the shared HA key from {name} (a witness holds the lease key only)")
            transports[name].run(f"rm -f {shlex.quote(shared)}")
            results[name].written.append(f"{shared} (removed)")
    return bool(keys.generated)


def _start_daemons(run: _Run, status: StatusReader, wait_s: float) -> None:
    """Witness first (the heads need its lease), then the primary, so it is the one that comes up active."""
    spec, transports, hosts, results, say = run.spec, run.transports, run.hosts, run.results, run.say
    primary = hosts[0]
    for host in [hosts[-1], *hosts[:-1]] if len(hosts) == 3 else hosts:
        transport = transports[host.name]
        what = "witness" if host.role == "witness" else "ha"
        result = results[host.name]
        port = spec.ha.witness.port if host.role == "witness" and spec.ha.witness else spec.ha.port
        if _running(transport, port):
            result.was_running = True
            continue
        say(f"starting the {what} daemon on {host.name}")
        code, output = transport.run(_start_command(run.start_command, host))
        if code != 0:
            raise UserError(f"starting the {what} daemon on {host.name} failed ({code}): {output}")
        result.started = True
        if host.role == "primary":
            # The primary is given a head start so that a cold start makes it the active head.
            _wait(lambda: (status(primary) or {}).get("state") == "active", min(wait_s, 20.0))


def _wait(predicate: Callable[[], bool], timeout: float, period: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(period)


def ssh_transports(
    spec: ClusterSpec, state_dir: Path, ssh_user: str = "root", ssh_port: int = 22
) -> dict[str, Transport]:
    """The primary (here) locally; the standby and the witness over ssh with haoscar's key."""
    from haoscar.provision.sshkeys import ensure_identity

    identity = ensure_identity(state_dir)
    argv = identity.ssh_argv(port=ssh_port)
    hosts = hosts_of(spec)
    doors: dict[str, Transport] = {hosts[0].name: LocalTransport(hosts[0].name)}
    for host in hosts[1:]:
        doors[host.name] = SshTransport(host.name, host.address, argv, ssh_user)
    return doors
