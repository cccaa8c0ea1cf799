"""What one head's daemon needs from the spec: its peer on every shared network, the VIP, and derived timings.

Every timing comes from the spec's ``ha:`` section; the ones derived here (lease margin, VIP lifetime, startup wait)
are shown by ``haoscar ha status`` and explained in docs/ha-safety.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Literal

from haoscar.spec.models import HA, ClusterSpec, Fencing
from haoscar.spec.topology import Link, Role, Topology, topology

__all__ = ["Link", "NodeConfig", "Role", "Timings", "node_config"]


@dataclass(frozen=True)
class Timings:
    interval: float
    dead: float
    lease: float
    margin: float
    vip_lifetime: int
    startup_wait: float
    handover_timeout: float
    probe_timeout: float
    # The probe of a failover proper (the peer declared dead, the witness lease held: ``decide.short_probe``).
    failover_probe_timeout: float
    # The standby's initial dead time (Heartbeat's ``initdead``): how long a freshly started standby that hears
    # nobody waits before it goes for the role, so that a primary whose start is slow still wins the cold start.
    initdead: float = 10.0

    @classmethod
    def from_ha(cls, ha: HA) -> Timings:
        return cls(
            interval=ha.heartbeat_interval,
            dead=ha.dead_time,
            lease=ha.lease_s,
            # The head's view of its lease ends this much before the witness's: it covers clock-rate drift (ppm)
            # and a late timer on a busy event loop.
            margin=max(0.05, 0.1 * ha.lease_s),
            # Kernel address lifetimes are whole seconds and IPv4 expires them within ~20 ms of the deadline (measured
            # here): the dead man's switch that removes the VIP when the daemon cannot renew it.
            vip_lifetime=max(1, math.ceil(ha.lease_s)),
            # Both heads of a cold start rarely start within dead_time of each other; the standby waits longer so
            # that the preferred primary wins when both are healthy.
            startup_wait=max(3 * ha.dead_time, 2.0),
            handover_timeout=max(3.0, 5 * ha.dead_time),
            # An ARP answer on a LAN takes well under a millisecond, and the probe reads what was queued by its
            # deadline even when its thread was kept from a CPU (``Vip.probe``): an eighth of an interval is ample.
            probe_timeout=min(0.03, ha.heartbeat_interval / 8),
            failover_probe_timeout=failover_probe_timeout(ha.heartbeat_interval),
            initdead=max(ha.initdead_s, ha.dead_time),
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "heartbeat_interval_s": self.interval,
            "dead_time_s": self.dead,
            "lease_s": self.lease,
            "lease_margin_s": self.margin,
            "vip_lifetime_s": float(self.vip_lifetime),
            "probe_timeout_s": self.probe_timeout,
            "failover_probe_timeout_s": self.failover_probe_timeout,
            "initdead_s": self.initdead,
            "expected_failover_s": self.expected_failover(),
        }

    def expected_failover(self) -> float:
        """Worst case after a crash: the lease runs out at the witness, then one request round and the VIP."""
        return max(self.dead, self.lease) + self.failover_probe_timeout + 0.05


def failover_probe_timeout(interval: float) -> float:
    """The ARP probe's timeout when the peer was declared dead and the lease is held: what it still looks for is a
    kernel whose daemon cannot act, and a live kernel answers ARP on a LAN in a fraction of a millisecond (in the
    lab, running or frozen, the answer was queued before ``send`` returned in 8,000 of 8,000 requests at load
    average 16-35). The window counts from the send (``Vip.probe``). 1/32 of the interval, never below 2 ms nor
    above the full probe's timeout: 3.1 ms at 0.1 s heartbeats, 6.25 ms at 0.2 s."""
    return min(0.03, interval / 8, max(0.002, interval / 32))


@dataclass(frozen=True)
class NodeConfig:
    """What the daemon reads: the resolved topology and the typed ``ha:`` settings it uses (never the raw section)."""

    topology: Topology
    vip: IPv4Address
    public_interface: str
    public_ip: IPv4Address
    port: int
    witness: tuple[IPv4Address, ...]
    witness_port: int
    witness_name: str  # the name the witness signs its replies with ("" without a witness)
    key_file: Path
    timings: Timings
    fencing: Fencing
    failback: Literal["manual", "auto"]
    failback_stable_s: float
    status_port: int
    # The private alias (issue 11): compute nodes reach the active head there; None when the spec has none.
    private_vip: IPv4Address | None = None
    private_interface: str = "eth0"
    private_ip: IPv4Address | None = None
    # Public health (``ha/public_health.py``): targets to ping, seconds between checks, failures before "lost".
    ping_targets: tuple[IPv4Address, ...] = ()
    ping_interval: float = 1.0
    ping_failures: int = 3

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def role(self) -> Role:
        return self.topology.role

    @property
    def peer_name(self) -> str:
        return self.topology.peer_name

    @property
    def links(self) -> tuple[Link, ...]:
        return self.topology.links

    @property
    def is_primary(self) -> bool:
        return self.topology.is_primary

    @property
    def fencing_configured(self) -> bool:
        return self.fencing.method != "none"


def node_config(spec: ClusterSpec, node: str, key_file: Path | None = None) -> NodeConfig:
    """The daemon configuration of head ``node`` (its host name, or ``primary`` / ``standby``)."""
    topo = topology(spec, node)
    me = topo.me
    ha = spec.ha
    witness = ha.witness
    return NodeConfig(
        topology=topo,
        vip=me.alias_ip,
        public_interface=me.public_interface,
        public_ip=me.public_ip,
        port=ha.port,
        witness=tuple(witness.addresses) if witness else (),
        witness_port=witness.port if witness else 0,
        witness_name=witness.hostname if witness else "",
        key_file=key_file or Path(ha.key_file),
        timings=Timings.from_ha(ha),
        fencing=ha.fencing,
        failback=ha.failback,
        failback_stable_s=ha.failback_stable_s,
        status_port=ha.status_port,
        private_vip=me.private_alias_ip,
        private_interface=me.private_interface,
        private_ip=me.private_ip,
        ping_targets=tuple(ha.ping_targets),
        ping_interval=ha.ping_interval,
        ping_failures=ha.ping_failures,
    )
