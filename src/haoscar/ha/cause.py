"""Why a head's role changes: a typed cause on every decision and on the events it produces, and the record
of the latest role gain (``Failover``).

Events and benchmarks read the cause, never the human reason text, so rewording a message changes nothing they
count. The ``failover`` event keeps its coarser ``kind`` (failover / switchover / start), derived from the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class Cause(StrEnum):
    DAEMON_START = "daemon-start"  # the daemon started: init -> standby
    START = "start"  # cold start: nobody is active and this head is the one to take the role
    FAILOVER = "failover"  # the peer is silent on every network
    TAKEOVER = "takeover"  # as a failover, on a stale copy the administrator forced (`haoscar ha takeover --force`)
    SWITCHOVER = "switchover"  # the operator moved the role to the standby (or a peer handed over, cause unknown)
    FAILBACK = "failback"  # the role goes back to the primary
    RESOURCE_FAILURE = "resource-failure"  # a service failed too often: handed over to the peer
    # the public link is down or fewer ping targets answer than from the standby: handed over (ha/public_health.py)
    PUBLIC_LINK_LOST = "public-link-lost"
    LEASE_LOST = "lease-lost"  # the lease view ended and the peer does not confirm this head
    PEER_ACTIVE = "peer-active"  # the peer is active (again): this head yields
    NOT_ENTITLED = "not-entitled"  # a takeover that got no lease (or may not fence): back to standby
    TAKEOVER_FAILED = "takeover-failed"  # probe, fence, VIP or services failed while starting
    DEMOTED = "demoted"  # a demotion finished
    RESOURCE_STUCK = "resource-stuck"  # a resource would not stop
    SHUTDOWN = "shutdown"  # the daemon is stopping

    @property
    def failover_kind(self) -> str:
        """The ``kind`` of the ``failover`` event (and ``last_failover``) a takeover with this cause produces."""
        if self in _DEAD_PEER or self == Cause.PUBLIC_LINK_LOST:
            return "failover"
        if self in HANDOVER_CAUSES:
            return "switchover"
        return "start"

    @property
    def peer_was_dead(self) -> bool:
        """The role came because the peer was declared dead (``since_dead_s`` is then measured)."""
        return self in _DEAD_PEER


_DEAD_PEER: Final = frozenset({Cause.FAILOVER, Cause.TAKEOVER})
# Causes of a demotion that hands the role to the peer; the peer's takeover carries the same cause.
HANDOVER_CAUSES: Final = frozenset(
    {Cause.SWITCHOVER, Cause.FAILBACK, Cause.RESOURCE_FAILURE, Cause.SHUTDOWN, Cause.PUBLIC_LINK_LOST}
)


def handover_cause(value: object) -> Cause:
    """The cause a peer announced with its handover (an older peer announces none: a switchover)."""
    if isinstance(value, str) and value in {c.value for c in HANDOVER_CAUSES}:
        return Cause(value)
    return Cause.SWITCHOVER


@dataclass
class Failover:
    reason: str
    took_s: float  # from the last heartbeat heard from the peer (or the request) to VIP and services up
    wall: float
    kind: str  # failover | switchover | start (``Cause.failover_kind``)
    # from the moment this head declared the peer dead (silent for dead_time) to VIP and services up; None when
    # the role came without a dead peer (handover, cold start)
    since_dead_s: float | None = None
    cause: Cause = Cause.START

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cause": self.cause.value,
            "reason": self.reason,
            "took_s": self.took_s,
            "since_dead_s": self.since_dead_s,
            "wall": self.wall,
        }
