"""keepalived (the Debian package) on the same lab, as the peer haoscar's failover is compared against.

Both heads run a VRRP instance on the public interface with unicast adverts between their public addresses and
the alias IP as the virtual address. *Tuned* (the default, what keepalived's documentation advises for a fast and
stable pair): priorities 254 and 253, so the backup's skew time ((256 - priority) / 256 x advert_int, RFC 5798) is
about 1 % of an interval instead of 60 %; both heads start as BACKUP with ``nopreempt`` (keepalived.conf(5): "for
this to work, the initial state must not be MASTER"), so a head that comes back does not take the role again. The
primary is started first and becomes MASTER alone before the standby starts, as one brings up such a pair.
*Untuned*: priorities 150 / 100, MASTER / BACKUP, preemption on, the sample configuration most guides copy.
Gratuitous ARP stays at keepalived's defaults. VRRPv2 carries the advert interval in whole seconds, so a
sub-second ``advert_int`` switches the instance to VRRPv3 (centiseconds), as keepalived itself advises.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover_probe import heard_argv
from haoscar.spec.models import ClusterSpec, HeadNode

VRRP_PROTO = 112  # the IP protocol number of VRRP (RFC 5798)

VRID = 51
PID_FILE = "/run/haoscar-bench-keepalived.pid"
VRRP_PID_FILE = "/run/haoscar-bench-keepalived-vrrp.pid"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class VrrpPeer:
    """One head's side of the VRRP pair."""

    host: str
    interface: str
    src_ip: str
    peer_ip: str
    priority: int
    state: Literal["MASTER", "BACKUP"]
    nopreempt: bool = False


def vrrp_peers(spec: ClusterSpec, tuned: bool = True) -> tuple[VrrpPeer, VrrpPeer]:
    primary, standby = spec.heads.primary, spec.heads.standby

    def side(me: HeadNode, other: HeadNode, priority: int, state: Literal["MASTER", "BACKUP"]) -> VrrpPeer:
        ips = str(me.public_ip), str(other.public_ip)
        return VrrpPeer(me.hostname, me.public_interface, *ips, priority, state, nopreempt=tuned)

    if tuned:
        return side(primary, standby, 254, "BACKUP"), side(standby, primary, 253, "BACKUP")
    return side(primary, standby, 150, "MASTER"), side(standby, primary, 100, "BACKUP")


def render_config(peer: VrrpPeer, vip: str, prefix: int, advert_int: float) -> str:
    """keepalived.conf for one head."""
    if advert_int <= 0:
        raise UserError(f"advert_int {advert_int:g} must be positive, e.g. 1 or 0.1")
    version = "" if float(advert_int).is_integer() else "    vrrp_version 3\n"
    preempt = "    nopreempt\n" if peer.nopreempt else ""
    return (
        "global_defs {\n"
        f"    router_id haoscar_bench_{peer.host}\n"
        f"{version}"
        "}\n"
        "vrrp_instance HAOSCAR_BENCH {\n"
        f"    state {peer.state}\n"
        f"    interface {peer.interface}\n"
        f"    virtual_router_id {VRID}\n"
        f"    priority {peer.priority}\n"
        f"{preempt}"
        f"    advert_int {advert_int:g}\n"
        f"    unicast_src_ip {peer.src_ip}\n"
        "    unicast_peer {\n"
        f"        {peer.peer_ip}\n"
        "    }\n"
        "    virtual_ipaddress {\n"
        f"        {vip}/{prefix} dev {peer.interface}\n"
        "    }\n"
        "}\n"
    )


def has_address(lab: Lab, host: str, interface: str, address: str) -> bool:
    """Whether ``address`` is assigned to ``interface`` inside ``host`` (False for a host that is down)."""
    if not lab.alive(host):
        return False
    out = lab.exec(host, ["ip", "-4", "-o", "addr", "show", "dev", interface], check=False, timeout=10).stdout
    return any(part.split("/")[0] == address for line in out.splitlines() for part in line.split())


def wait_for(condition: str, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    """Poll ``check()`` until it is true; RuntimeError naming ``condition`` on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {condition}")
        time.sleep(interval)


class KeepalivedPair:
    """keepalived on both heads of a lab; ``start`` returns once the primary is MASTER and holds the VIP."""

    def __init__(self, lab: Lab, spec: ClusterSpec, advert_int: float, workdir: Path, tuned: bool = True) -> None:
        if shutil.which("keepalived") is None:
            raise UserError("keepalived is not installed; `apt-get install keepalived` (it is in APT_PACKAGES)")
        self.lab = lab
        self.spec = spec
        self.advert_int = advert_int
        self.tuned = tuned
        self.label = f"keepalived {'tuned' if tuned else 'untuned'} advert_int {advert_int:g}"
        self.workdir = workdir
        self.vip = str(spec.heads.primary.alias_ip)
        self.prefix = spec.networks.public.subnet.prefixlen
        self.peers = vrrp_peers(spec, tuned)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def settle_s(self) -> float:
        """A backup that has not yet heard the new master still runs its startup Master_Down timer (3 adverts and
        the skew); crashing the master inside that window would time the startup, not a failover."""
        return 3 * self.advert_int + 1.0

    @property
    def period_s(self) -> float:
        """The advert interval: the crash phase is drawn uniformly within it."""
        return self.advert_int

    @property
    def primary(self) -> VrrpPeer:
        return self.peers[0]

    def heard_argv(self) -> list[str]:
        """Adverts: VRRP (IP protocol 112), unicast from the primary's public address."""
        return heard_argv([str(self.spec.heads.primary.public_ip)], VRRP_PROTO, None)

    def start_head(self, peer: VrrpPeer) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / f"keepalived-{peer.host}.conf"
        conf.write_text(render_config(peer, self.vip, self.prefix, self.advert_int))
        log = open(self.workdir / f"keepalived-{peer.host}.log", "ab")  # noqa: SIM115 - handed to the child
        self._logs.append(log)
        argv = [
            "keepalived", "--dont-fork", "--log-console", "--no-syslog", "--vrrp", "--dont-respawn",
            "-f", str(conf), "-p", PID_FILE, "-r", VRRP_PID_FILE,
        ]  # fmt: skip
        self.procs[peer.host] = self.lab.popen(
            peer.host, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        """Start both heads and wait until the primary owns the VIP (and the standby does not). Tuned, both start
        as BACKUP with nopreempt: the primary is started alone and waited for as MASTER, or whichever head's
        startup timer ran out first would keep the role."""
        if self.tuned:
            self.start_head(self.primary)
            wait_for(
                f"keepalived on {self.primary.host} to become MASTER alone (log in {self.workdir})",
                lambda: has_address(self.lab, self.primary.host, self.primary.interface, self.vip),
                START_TIMEOUT_S,
            )
            self.start_head(self.peers[1])
        else:
            for peer in self.peers:
                self.start_head(peer)
        wait_for(
            f"keepalived on {self.primary.host} to become MASTER with {self.vip} (log in {self.workdir})",
            self.steady,
            START_TIMEOUT_S,
        )

    def steady(self) -> bool:
        """The primary holds the VIP and the standby does not. Right after a start both may be MASTER for a while
        (each one's startup timer ran out before it heard the other), which is no state to crash from."""
        standby = self.peers[1]
        primary_has = has_address(self.lab, self.primary.host, self.primary.interface, self.vip)
        return primary_has and not has_address(self.lab, standby.host, standby.interface, self.vip)

    def stop(self) -> None:
        """Stop every keepalived this pair started, by pid; a crashed head's process is already gone."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        self._logs.clear()
        # keepalived removes its VIP when it stops; a head that still shows it would poison the next run.
        for peer in self.peers:
            wait_for(
                f"{self.vip} to leave {peer.host}",
                lambda p=peer: not has_address(self.lab, p.host, p.interface, self.vip),  # type: ignore[misc]
                10.0,
            )
