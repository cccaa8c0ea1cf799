"""HA in a lab, for tests, benchmarks and the demo: start the witness and both heads' daemons inside lab hosts,
read their status, serve the ``lab`` fencing method, and sample who owns the VIP every 10 ms.

Everything runs for real: each daemon is ``python -m haoscar ha run`` inside its lab host (network, mount and PID
namespaces), with the spec and key written to that host's private /etc/haoscar. Status is read straight from the
daemon's control socket, which lives in the host's private /var/lib/haoscar, visible on the root file system.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
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
from pyroute2 import IPRoute

from haoscar.errors import UserError
from haoscar.ha.control import request
from haoscar.ha.vip import ETH_P_ARP, format_mac, parse_arp
from haoscar.keys import generate_key
from haoscar.lab.lab import Lab
from haoscar.lab.names import NETNS_DIR
from haoscar.lab.nsenter import setns
from haoscar.spec.models import ClusterSpec

# Heartbeat profiles: ``default`` is the spec's default; ``fast`` has 100 ms heartbeats and a lease as long as the
# dead time, so that the witness frees the lease the moment the standby declares the peer dead (docs/ha.md).
PROFILES: dict[str, dict[str, float]] = {
    "default": {"heartbeat_interval": 0.2, "dead_time": 0.6, "lease_s": 0.8},
    "fast": {"heartbeat_interval": 0.1, "dead_time": 0.3, "lease_s": 0.3},
}
HOST_STATE_DIR = "/var/lib/haoscar"
HOST_SPEC = "/etc/haoscar/cluster.yaml"
CLONE_NEWNET = 0x40000000


def ha_spec(
    spec: ClusterSpec,
    *,
    profile: str = "default",
    fencing: str = "lab",
    fence_socket: str | None = None,
    witness: bool = True,
    fence_options: dict[str, str] | None = None,
    **ha_overrides: Any,
) -> ClusterSpec:
    """``spec`` with a timing profile, a fencing choice (``fence_options``: ``ha.fencing.options``, e.g. the host,
    identity and command of ``ssh``) and any other ``ha:`` overrides applied."""
    if profile not in PROFILES:
        raise UserError(f"unknown HA profile {profile!r}; use one of {', '.join(PROFILES)}")
    update: dict[str, Any] = dict(PROFILES[profile])
    options = {"socket": fence_socket} if fencing == "lab" and fence_socket else {}
    options.update(fence_options or {})
    update["fencing"] = spec.ha.fencing.model_copy(update={"method": fencing, "options": options})
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
                [sys.executable, "-m", "haoscar", "--state-dir", HOST_STATE_DIR, *argv],
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
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        if self.fence is not None:
            self.fence.close()
            self.fence = None


def start_ha(
    lab: Lab,
    spec: ClusterSpec,
    *,
    profile: str = "default",
    fencing: str = "lab",
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
        key_path = generate_key(key_dir / "ha.key")
        key = key_path.read_bytes()
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)
    hosts = [effective.heads.primary.hostname, effective.heads.standby.hostname]
    if effective.ha.witness:
        hosts.append(effective.ha.witness.hostname)
    text = dump_spec(effective)
    for host in hosts:
        etc = lab.host_dir(host) / "etc/haoscar"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "cluster.yaml").write_text(text)
        key_file = etc / "ha.key"
        key_file.write_bytes(key)
        os.chmod(key_file, 0o600)
    ha = HaLab(lab, effective, key, fence)
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


# -- the owner sampler ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    t: float
    configured: frozenset[str]  # heads with the VIP on their public interface
    reachable: frozenset[str]  # ... on an interface that is up: they answer for it
    client_owner: str | None  # whose MAC the public client's ARP cache holds for the VIP


@dataclass(frozen=True)
class ArpSeen:
    t: float
    mac: str
    head: str | None
    op: int


def in_netns(name: str, make: Any) -> Any:
    """Run ``make()`` with this thread inside network namespace ``name`` (setns is per thread), then return."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with open(f"{NETNS_DIR}/{name}") as target:
                setns(target.fileno(), CLONE_NEWNET)
            result.append(make())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)  # a throwaway thread: its namespace dies with it
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class OwnerSampler:
    """Every ``period`` seconds: which head has the VIP (and on an up link), and what the public client's ARP
    cache says; meanwhile every ARP packet on the client's side that speaks for the VIP is recorded."""

    def __init__(self, ha: HaLab, client: str | None = None, period: float = 0.01) -> None:
        self.ha = ha
        self.period = period
        self.vip = ha.vip
        self.heads = [ha.primary, ha.standby]
        self.client = client or (ha.spec.lab.client.hostname if ha.spec.lab.client else None)
        self.samples: list[Sample] = []
        self.arp: list[ArpSeen] = []
        self._stop = threading.Event()
        self._ipr = {head: IPRoute(netns=ha.lab.netns(head), flags=0, groups=0) for head in self.heads}
        self._public = {head: self._public_if(head) for head in self.heads}
        self._macs = {self._mac(head): head for head in self.heads}
        self._client_ipr = IPRoute(netns=ha.lab.netns(self.client), flags=0, groups=0) if self.client else None
        self._arp_sock: socket.socket | None = None
        if self.client:
            iface = next(i.name for i in ha.lab.host(self.client).interfaces if i.network == "public")

            def make() -> socket.socket:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
                sock.bind((iface, ETH_P_ARP))
                sock.settimeout(0.2)
                return sock

            self._arp_sock = in_netns(ha.lab.netns(self.client), make)
        self._threads = [threading.Thread(target=self._run, name="haoscar-owner-sampler", daemon=True)]
        if self._arp_sock is not None:
            self._threads.append(threading.Thread(target=self._watch_arp, name="haoscar-arp-watch", daemon=True))

    def _public_if(self, head: str) -> str:
        heads = self.ha.spec.heads
        return heads.primary.public_interface if head == self.ha.primary else heads.standby.public_interface

    def _mac(self, head: str) -> str:
        ipr = self._ipr[head]
        link = ipr.get_links(ifname=self._public_if(head))[0]
        return str(link.get("IFLA_ADDRESS"))

    def __enter__(self) -> OwnerSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for ipr in [*self._ipr.values(), self._client_ipr]:
            if ipr is not None:
                ipr.close()
        if self._arp_sock is not None:
            self._arp_sock.close()

    def _holds(self, head: str) -> tuple[bool, bool]:
        """(the VIP is configured on the head, and its public link is up)."""
        ipr = self._ipr[head]
        try:
            if not ipr.get_addr(address=self.vip):
                return False, False
            link = ipr.get_links(ifname=self._public[head])[0]
            return True, bool(link["flags"] & 1 and link.get("IFLA_OPERSTATE") in ("UP", "UNKNOWN"))
        except Exception:
            return False, False

    def sample_once(self) -> Sample:
        # The heads are read one after the other, a few ms apart: a handover that completes between the two reads
        # (the old head read before it dropped the VIP, the new one after it added it) would look like two owners.
        # So two owners count only when the first head, read again after the second, still holds the VIP: then
        # it held it throughout, including the instant the second was read (a head never re-adds the VIP within
        # milliseconds of dropping it).
        configured, reachable = set(), set()
        for head in self.heads:
            has, up = self._holds(head)
            if has:
                configured.add(head)
            if up:
                reachable.add(head)
        if len(configured) >= 2:
            first = self.heads[0]
            has, up = self._holds(first)
            if not has:
                configured.discard(first)
            if not up:
                reachable.discard(first)
        owner = None
        if self._client_ipr is not None:
            with contextlib.suppress(Exception):
                for neigh in self._client_ipr.get_neighbours(dst=self.vip):
                    mac = neigh.get("NDA_LLADDR")
                    owner = self._macs.get(str(mac), str(mac) if mac else None)
        return Sample(time.monotonic(), frozenset(configured), frozenset(reachable), owner)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample_once())
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def _watch_arp(self) -> None:
        assert self._arp_sock is not None
        vip = self.vip
        while not self._stop.is_set():
            try:
                frame = self._arp_sock.recv(128)
            except (TimeoutError, OSError):
                continue
            parsed = parse_arp(frame)
            if parsed is None:
                continue
            op, sender_mac, sender_ip, _target = parsed
            if str(sender_ip) == vip:
                mac = format_mac(sender_mac)
                self.arp.append(ArpSeen(time.monotonic(), mac, self._macs.get(mac), op))

    # -- results ------------------------------------------------------------------------------------------
    def double_ownership_s(self, since: float = 0.0) -> float:
        """Total time two heads answered for the VIP at once (each sample counts until the next one)."""
        total = 0.0
        samples = [s for s in self.samples if s.t >= since]
        for first, second in itertools.pairwise(samples):
            if len(first.reachable) >= 2:
                total += second.t - first.t
        return total

    def max_owners(self, since: float = 0.0) -> int:
        return max((len(s.reachable) for s in self.samples if s.t >= since), default=0)

    def first_owned_by(self, head: str, since: float) -> float | None:
        return next((s.t for s in self.samples if s.t >= since and head in s.reachable), None)

    def last_owned_by(self, head: str) -> float | None:
        return next((s.t for s in reversed(self.samples) if head in s.reachable), None)

    def announced_by(self, head: str, since: float) -> list[ArpSeen]:
        return [a for a in self.arp if a.t >= since and a.head == head]


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
