"""The witness lease, both sides, without I/O.

Witness: ``LeaseTable`` grants one holder at a time a lease that ends ``lease`` seconds after the witness
*received* the request, on the witness's monotonic clock. After the witness starts it grants nothing for one lease
duration, because a lease it granted before a restart may still be running.

Head: ``LeaseView`` remembers when it *sent* each request (its own monotonic clock) and, on a granted reply,
believes the lease until ``sent + lease - margin``. Since the request was received after it was sent, the head's
view always ends before the witness's, whatever the network delay; the margin covers clock-rate drift and a late
timer. Clocks of different hosts are never compared.

Stale marks: the lease holder (the active head) tells the witness on its renewals whether its standby's
replicated copy is stale (it missed acknowledged changes). The witness keeps the mark (persisted by
``haoscar.ha.witness``) and refuses the lease to a marked head unless its request says ``force``: a standby cut off
before the active head crashed cannot know it is stale, but the witness it must ask for the lease does
(docs/replication.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Grant:
    granted: bool
    holder: str | None
    remaining: float  # seconds left for the holder, as the witness sees it
    stale: str | None = None  # the requester is marked stale (why): refused unless forced


@dataclass
class LeaseTable:
    lease: float
    started: float
    holder: str | None = None
    expires: float = 0.0
    grants: int = 0
    stale: dict[str, str] = field(default_factory=dict)  # head -> why its copy is stale (set by the other head)

    def request(self, node: str, op: str, now: float, force: bool = False) -> Grant:
        """``op`` is ``acquire`` (also used to renew), ``release`` or ``query``. ``force``: acquire although this
        head is marked stale (the administrator's ``haoscar ha takeover --force``); the mark goes with the grant."""
        if self.holder is not None and now >= self.expires:
            self.holder = None
        marked = self.stale.get(node)
        if op == "query":
            return Grant(False, self.holder, self._remaining(now), marked)
        if op == "release":
            if self.holder == node:
                self.holder = None
            return Grant(False, self.holder, self._remaining(now), marked)
        if now - self.started < self.lease:  # the start-up wait: its end is when to ask again, stale or not
            return Grant(False, self.holder, self.lease - (now - self.started), marked)
        if self.wait_before_grant(node, now, force) != 0.0:  # another holder's lease runs, or refused as stale
            return Grant(False, self.holder, self._remaining(now), marked)
        if self.holder is None:
            self.grants += 1
        self.holder = node
        self.expires = now + self.lease
        self.stale.pop(node, None)  # it holds the role now: its copy is the reference
        return Grant(True, node, self.lease)

    def wait_before_grant(self, node: str, now: float, force: bool = False) -> float | None:
        """How long until an ``acquire`` of ``node`` could be granted, changing nothing: 0 now, the seconds left of
        another holder's lease or of the start-up wait, None while ``node`` is refused as stale. ``request`` grants
        exactly when this is 0 (the witness's hold, ``witness.py``, relies on that)."""
        if self.stale.get(node) is not None and not force and not (self.holder == node and now < self.expires):
            return None
        waits = [self.lease - (now - self.started)]
        if self.holder not in (None, node):
            waits.append(self.expires - now)
        return max(0.0, *waits)

    def mark(self, by: str, peer: str, *, stale: bool, reason: str, was_holder: bool, now: float) -> bool | None:
        """The active head ``by`` says whether ``peer``'s copy is stale. Only a head that holds the lease (before
        or after its request) may say it; returns the peer's mark after the call, None when not accepted."""
        holds = self.holder == by and now < self.expires
        if not (holds or was_holder) or peer == by:
            return None
        if stale:
            self.stale[peer] = reason or f"{by} reported it stale"
        else:
            self.stale.pop(peer, None)
        return peer in self.stale

    def holds(self, node: str, now: float) -> bool:
        return self.holder == node and now < self.expires

    def _remaining(self, now: float) -> float:
        return max(0.0, self.expires - now) if self.holder else 0.0

    def status(self, now: float) -> dict[str, object]:
        if self.holder is not None and now >= self.expires:
            self.holder = None
        return {"holder": self.holder, "remaining_s": round(self._remaining(now), 3), "grants": self.grants}


@dataclass
class LeaseView:
    lease: float
    margin: float
    until: float | None = None
    holder: str | None = None  # the holder named by the latest reply
    holder_remaining: float = 0.0
    last_reply: float | None = None
    denials: int = 0
    _sent: dict[int, tuple[float, str]] = field(default_factory=dict)

    def sent(self, nonce: int, now: float, op: str = "acquire") -> None:
        """``op``: ``acquire`` (renews too), ``release``, or ``query`` (who holds it; changes nothing)."""
        self._sent[nonce] = (now, op)
        if len(self._sent) > 64:  # replies to very old requests are useless; keep the table small
            for old in sorted(self._sent)[:-32]:
                del self._sent[old]

    def reply(self, nonce: int, granted: bool, holder: str | None, remaining: float, now: float) -> bool:
        """Apply a reply; False when it answers no request of ours (a replay or a stray)."""
        entry = self._sent.pop(nonce, None)
        if entry is None:
            return False
        sent, op = entry
        self.last_reply = now
        self.holder = holder
        self.holder_remaining = remaining
        if op == "query":
            return True
        if granted:
            self.until = max(self.until or 0.0, sent + self.lease - self.margin)
        else:
            self.denials += 1
            self.until = None  # the witness says someone else holds it (or nobody may yet): believe nothing
        return True

    def release(self) -> None:
        self.until = None

    def valid(self, now: float) -> bool:
        return self.until is not None and now < self.until

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now) if self.until is not None else 0.0
