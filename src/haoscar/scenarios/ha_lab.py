"""HA in a lab, for tests, benchmarks and the demo: start the witness and both heads' daemons inside lab hosts,
read their status, serve the ``lab`` fencing method, and sample who owns the VIP every 10 ms.

Everything runs for real: each daemon is ``python -m haoscar ha run`` inside its lab host (network, mount and PID
namespaces), with the spec and key written to that host's private /etc/haoscar. Status is read straight from the
daemon's control socket, which lives in the host's private /var/lib/haoscar, visible on the root file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haoscar.commands.cluster_tls import write_lab_tls
from haoscar.errors import UserError
from haoscar.ha.control import request
from haoscar.ha.scheduling import launch_prefix
from haoscar.keyring import PURPOSES, WITNESS_PURPOSES, generate_keyrings
from haoscar.lab.lab import Lab
from haoscar.lab.procs import stop_started
from haoscar.scenarios.cluster_lab import apply_spec_on, needs_database
from haoscar.spec.models import ClusterSpec, Fencing

# Heartbeat profiles: ``default`` is the spec's default; ``fast`` has 100 ms heartbeats and a lease as long as the
# dead time, so that the witness frees the lease the moment the standby declares the peer dead (docs/ha.md).
PROFILES: dict[str, dict[str, float]] = {
    "default": {"heartbeat_interval": 0.2, "dead_time": 0.6, "lease_s": 0.8},
    "fast": {"heartbeat_interval": 0.1, "dead_time": 0.3, "lease_s": 0.3},
}
HOST_STATE_DIR = "/var/lib/haoscar"
HOST_SPEC = "/etc/haoscar/cluster.yaml"


def ha_spec(
    spec: ClusterSpec,
    *,
    profile: str = "default",
    fencing: str | Fencing = "lab",
    fence_socket: str | None = None,
    witness: bool = True,
    fence_options: dict[str, str] | None = None,
    **ha_overrides: Any,
) -> ClusterSpec:
    """``spec`` with a timing profile, a fencing choice (a method with ``fence_options``: ``ha.fencing.options``,
    e.g. the host, identity and command of ``ssh``; or a whole ``Fencing``) and any other ``ha:`` overrides."""
    if profile not in PROFILES:
        raise UserError(f"unknown HA profile {profile!r}; use one of {', '.join(PROFILES)}")
    update: dict[str, Any] = dict(PROFILES[profile])
    options = {"socket": fence_socket} if fencing == "lab" and fence_socket else {}
    options.update(fence_options or {})
    update["fencing"] = (
        fencing
        if isinstance(fencing, Fencing)
        else spec.ha.fencing.model_copy(update={"method": fencing, "options": options})
    )
    if not witness:
        update["witness"] = None
    # Replication is off unless asked for (``replication=True``): the HA tests that are not about it stay fast, and
    # a daemon killed with -9 cannot leave an rsync daemon holding the port its restart needs.
    update["replication"] = False
    update.update(ha_overrides)
    return spec.model_copy(update={"ha": spec.ha.model_copy(update=update)})


def dump_spec(spec: ClusterSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


class FenceServer:
    """The lab side of ``fencing: lab``: crashes the lab host a daemon names. A UNIX socket in a private
    directory under /tmp, which is shared by the lab hosts (their /run and /var/lib/haoscar are private)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="haoscar-fence-"))
        os.chmod(self.dir, 0o700)
        self.path = self.dir / "fence.sock"
        self.requests: list[tuple[float, str, bool]] = []
        allowed = set(lab.hosts)
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    req = json.loads(self.rfile.readline())
                    host = str(req.get("host"))
                    if host not in allowed:
                        raise UserError(f"no lab host {host!r}")
                    outer.lab.crash(host)
                    reply = {"ok": True, "message": f"lab host {host} crashed"}
                except Exception as exc:
                    host, reply = "?", {"ok": False, "message": str(exc)}
                outer.requests.append((time.monotonic(), host, bool(reply["ok"])))
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        self.server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="haoscar-fence", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class HaLab:
    lab: Lab
    spec: ClusterSpec
    key: bytes
    fence: FenceServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return self.spec.heads.primary.hostname

    @property
    def standby(self) -> str:
        return self.spec.heads.standby.hostname

    @property
    def witness_host(self) -> str | None:
        return self.spec.ha.witness.hostname if self.spec.ha.witness else None

    @property
    def vip(self) -> str:
        return str(self.spec.heads.primary.alias_ip)

    def log_path(self, host: str, what: str) -> Path:
        return self.lab.host_dir(host) / "var/lib/haoscar" / f"{what}.log"

    def _popen(self, host: str, what: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_path(host, what)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = self.lab.popen(
                host,
                # started as the shipped unit starts it (real-time scheduling, reset on fork: ha/scheduling.py)
                [*launch_prefix(what), sys.executable, "-m", "haoscar", "--state-dir", HOST_STATE_DIR, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.procs[f"{what}@{host}"] = proc
        return proc

    def start_witness(self) -> None:
        if self.witness_host:
            self._popen(self.witness_host, "witness", ["witness", "run", "--spec", HOST_SPEC])

    def start_daemon(self, head: str) -> subprocess.Popen[bytes]:
        if needs_database(self.spec):  # the netboot resources render from the database, as after set-up
            apply_spec_on(self.lab, head)
        with contextlib.suppress(FileNotFoundError):
            (self.lab.host_dir(head) / "var/lib/haoscar/ha/control.sock").unlink()
        return self._popen(head, "ha", ["ha", "run", "--node", head, "--spec", HOST_SPEC])

    def proc(self, host: str, what: str = "ha") -> subprocess.Popen[bytes]:
        return self.procs[f"{what}@{host}"]

    def kill9(self, host: str, what: str = "ha") -> None:
        proc = self.proc(host, what)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def terminate(self, host: str, what: str = "ha", timeout: float = 10.0) -> int | None:
        proc = self.proc(host, what)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def status(self, head: str, timeout: float = 2.0) -> dict[str, Any] | None:
        """The daemon's status, or None when it does not answer (not started, crashed, frozen)."""
        path = self.lab.host_dir(head) / "var/lib/haoscar/ha/control.sock"
        try:
            return request(path, "status", timeout=timeout)
        except (UserError, OSError, ValueError):
            return None

    def control(self, head: str, op: str) -> dict[str, Any]:
        return request(self.lab.host_dir(head) / "var/lib/haoscar/ha/control.sock", op)

    def wait_for(self, head: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.status(head, timeout=1.0)
            if last is not None and last.get("state") == state:
                return last
            time.sleep(0.05)
        raise TimeoutError(f"{head} did not reach {state} within {timeout:g} s; last status: {last}\n{self.logs(head)}")

    def logs(self, host: str, what: str = "ha", tail: int = 40) -> str:
        try:
            lines = self.log_path(host, what).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no {what} log on {host})"
        return f"--- {what}@{host} ---\n" + "\n".join(lines[-tail:])

    def stop(self) -> None:
        """Stop every process started here (by pid) and the fence server; safe to call twice."""
        stop_started(self.procs.values())
        if self.fence is not None:
            self.fence.close()
            self.fence = None


def start_ha(
    lab: Lab,
    spec: ClusterSpec,
    *,
    profile: str = "default",
    fencing: str | Fencing = "lab",
    witness: bool = True,
    heads: tuple[str, ...] = ("primary", "standby"),
    wait: bool = True,
    fence_options: dict[str, str] | None = None,
    **ha_overrides: Any,
) -> HaLab:
    """Write key and spec into the lab hosts, start the witness and the daemons of ``heads`` (roles), and (with
    ``wait``) return once one head is active and the other standby."""
    fence = FenceServer(lab) if fencing == "lab" else None
    effective = ha_spec(
        spec,
        profile=profile,
        fencing=fencing,
        fence_socket=str(fence.path) if fence else None,
        witness=witness,
        fence_options=fence_options,
        **ha_overrides,
    )
    key_dir = Path(tempfile.mkdtemp(prefix="haoscar-key-"))
    try:
        # One key per purpose: both heads get all three, the witness only the lease key (docs/security.md#keys).
        keys = {path.stem: path.read_bytes() for path in generate_keyrings(key_dir)}
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)
    hosts = [effective.heads.primary.hostname, effective.heads.standby.hostname]
    if effective.ha.witness:
        hosts.append(effective.ha.witness.hostname)
    text = dump_spec(effective)
    witness_host = effective.ha.witness.hostname if effective.ha.witness else None
    for host in hosts:
        etc = lab.host_dir(host) / "etc/haoscar"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "cluster.yaml").write_text(text)
        wanted = WITNESS_PURPOSES if host == witness_host else PURPOSES
        for purpose in wanted:
            (etc / "keys").mkdir(mode=0o700, exist_ok=True)
            key_file = etc / "keys" / f"{purpose}.key"
            key_file.touch(mode=0o600)
            os.chmod(key_file, 0o600)  # before the bytes: never readable by others
            key_file.write_bytes(keys[purpose])
    write_lab_tls(effective, lab.host_dir)  # the cluster CA and the heads' certificates, as set-up writes them
    ha = HaLab(lab, effective, keys["heartbeat"], fence)
    try:
        ha.start_witness()
        names = {"primary": ha.primary, "standby": ha.standby}
        for role in heads:
            ha.start_daemon(names.get(role, role))
        if wait and len(heads) == 2:
            ha.wait_for(ha.primary, "active", 20.0)
            ha.wait_for(ha.standby, "standby", 20.0)
    except BaseException:
        ha.stop()
        raise
    return ha


def wait_until(predicate: Any, timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


@contextlib.contextmanager
def ha_lab(spec: ClusterSpec, name: str, state_dir: Path | str, **start: Any) -> Iterator[HaLab]:
    """A lab with HA running (``start_ha`` keywords), always stopped and taken down, also when the body fails."""
    from haoscar.lab.lab import down_lab

    lab = None
    ha = None
    try:
        lab = Lab.up(spec, name, state_dir)
        ha = start_ha(lab, spec, **start)
        yield ha
    finally:
        if ha is not None:
            ha.stop()
        down_lab(name, state_dir)
