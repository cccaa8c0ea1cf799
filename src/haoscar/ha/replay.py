"""Replay protection: a sliding window of sequence numbers per sender and incarnation (as in IPsec, RFC 4303).

Every sender numbers its packets 1, 2, 3, ... within an *incarnation*, a number it takes at start from a persisted,
fsync'd boot counter (``haoscar.ha.incarnation``), so a restarted daemon has a larger one whatever its clock says.
A receiver accepts a packet when its sequence number is new within the window of the sender's current
incarnation; a packet of an older incarnation is a replay of a previous life and is refused, a larger incarnation
starts a new window. Packets sent on several networks carry distinct sequence numbers, so the
copy that arrives on a second network is not taken for a replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from haoscar.ha.wire import KeyLike, Packet, Rejected, decode


@dataclass
class _Window:
    incarnation: int
    highest: int = 0
    bitmap: int = 0  # bit i set = highest - i was seen


class ReplayWindow:
    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._senders: dict[str, _Window] = {}

    def accept(self, sender: str, incarnation: int, seq: int) -> bool:
        """True (and remembered) when the packet is fresh; False for a replay or a packet too old to judge."""
        window = self._senders.get(sender)
        if window is None or incarnation > window.incarnation:
            window = self._senders[sender] = _Window(incarnation)
        elif incarnation < window.incarnation:
            return False
        if seq <= 0:
            return False
        if seq > window.highest:
            shift = seq - window.highest
            window.bitmap = ((window.bitmap << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            window.highest = seq
            return True
        offset = window.highest - seq
        if offset >= self.size or window.bitmap & (1 << offset):
            return False
        window.bitmap |= 1 << offset
        return True

    def incarnation(self, sender: str) -> int | None:
        window = self._senders.get(sender)
        return None if window is None else window.incarnation


def admit(data: bytes, key: KeyLike, kind: int, senders: Collection[str], window: ReplayWindow) -> Packet:
    """A packet that is authentic, of ``kind``, from one of ``senders`` and fresh in ``window``; ``Rejected``
    (with the drop reason) otherwise. The one check the heads and the witness both apply to what they receive."""
    packet = decode(data, key)
    if packet.kind != kind:
        raise Rejected("wrong_kind")
    if packet.sender not in senders:
        raise Rejected("unknown_sender")
    if not window.accept(packet.sender, packet.incarnation, packet.seq):
        raise Rejected("replay")
    return packet
