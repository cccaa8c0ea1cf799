"""What a head knows about its peer from authenticated heartbeats, and what it counts about bad packets.

Times are this head's monotonic clock. The peer's own clock never enters: its heartbeats carry the highest sequence
number it received from us (``ack``), and since we remember when we *sent* that packet, we know a moment before
which the peer heard us, without comparing clocks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from haoscar.ha.cause import Cause, handover_cause
from haoscar.ha.state import State
from haoscar.ha.wire import DROP_REASONS


def _state(label: Any) -> State | None:
    try:
        return State[str(label).upper()]
    except KeyError:
        return None


@dataclass
class PeerView:
    networks: tuple[str, ...]
    last_heard: dict[str, float] = field(default_factory=dict)
    state: State | None = None
    healthy: bool = False
    all_links: bool = False
    sees_me: State | None = None
    ack_seq: int = 0  # the highest of our sequence numbers the peer has received (this life of ours)
    received_seq: int = 0  # the highest of the peer's sequence numbers we have received (its current life)
    handover_to: str | None = None
    handover_id: int = 0  # which handover of the peer (its sequence number when it began handing over)
    handover_cause: Cause = Cause.SWITCHOVER  # why the peer hands over (switchover, failback, ...)
    wants_failback: bool = False
    public_score: int | None = None  # the peer's public health score (ha/public_health.py); None: not reported
    incarnation: int | None = None
    received: Counter[str] = field(default_factory=Counter)
    last_body: dict[str, Any] = field(default_factory=dict)

    def heard(self, network: str, body: dict[str, Any], now: float, my_incarnation: int) -> None:
        self.last_heard[network] = now
        self.received[network] += 1
        inc, seq = body.get("inc"), int(body.get("seq", 0))
        if inc != self.incarnation:  # the peer restarted: its numbers start again
            self.incarnation = inc
            self.last_body = {}
            self.received_seq = 0
            self.ack_seq = 0
        self.received_seq = max(self.received_seq, seq)
        # Packets can arrive out of order across networks; take the peer's fields only from its newest packet.
        if seq < int(self.last_body.get("seq", 0)):
            return
        self.last_body = body
        self.state = _state(body.get("state"))
        self.healthy = bool(body.get("healthy"))
        self.all_links = bool(body.get("all_links"))
        self.sees_me = _state(body.get("sees"))
        # An acknowledgement of one of *our* previous lives says nothing about this one.
        if body.get("ack_inc") == my_incarnation:
            self.ack_seq = max(self.ack_seq, int(body.get("ack", 0)))
        handover = body.get("handover")
        self.handover_to = handover if isinstance(handover, str) else None
        self.handover_id = int(body.get("handover_id") or 0)
        self.handover_cause = handover_cause(body.get("handover_cause"))
        self.wants_failback = bool(body.get("failback"))
        public = body.get("public")
        self.public_score = public if isinstance(public, int) and not isinstance(public, bool) else None

    def newest(self) -> float | None:
        return max(self.last_heard.values(), default=None)

    def alive_on(self, now: float, dead: float) -> dict[str, bool]:
        return {net: (net in self.last_heard and now - self.last_heard[net] < dead) for net in self.networks}


@dataclass
class SentLog:
    """When each of our heartbeats was sent, so an acknowledged sequence number becomes a time."""

    keep: int = 512
    _times: dict[int, float] = field(default_factory=dict)

    def record(self, seq: int, now: float) -> None:
        self._times[seq] = now
        if len(self._times) > self.keep:
            for old in sorted(self._times)[: len(self._times) - self.keep // 2]:
                del self._times[old]

    def sent_at(self, seq: int) -> float | None:
        return self._times.get(seq)


@dataclass
class DropCounters:
    counts: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.counts[reason] += 1

    def as_dict(self) -> dict[str, int]:
        return {reason: self.counts.get(reason, 0) for reason in DROP_REASONS}
