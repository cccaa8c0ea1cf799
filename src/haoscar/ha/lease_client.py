"""The head's side of the witness lease: requests (acquire / query / release), replies, and the quick re-ask.

``acquire`` when the head wants or holds the role (or probes for it from standby), ``query`` otherwise, so the
standby also knows who holds it. A denial that names the holder's remaining time is asked again exactly when it
ends. The replies also carry the witness's word on whether it marks our standby stale (docs/replication.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

from haoscar.ha.config import NodeConfig
from haoscar.ha.lease import LeaseView
from haoscar.ha.replication_glue import ReplicationGlue
from haoscar.ha.state import WANTS_LEASE, State
from haoscar.ha.transport import Endpoint, Packets
from haoscar.ha.wire import KIND_LEASE_REPLY, KIND_LEASE_REQUEST, encode

# How long before a lease can be granted a standby asks for it; the witness holds a request that arrives up to
# ``witness.HOLD_S`` (5 ms) early and answers it at the end. 3 ms: a loop timer 1 ms late (and the dead time's
# precise timer, which holds the loop for its last 1.5 ms) still asks in time, and a request that arrives too early
# is denied as before (and asked again).
ASK_AHEAD_S = 0.003


class LeaseHost(Protocol):
    """What the lease client needs to know of the daemon, and how it asks it to decide again."""

    @property
    def role_state(self) -> State: ...

    @property
    def probing(self) -> bool: ...

    def evaluate(self, now: float | None = None) -> None: ...


class LeaseClient:
    def __init__(self, cfg: NodeConfig, packets: Packets, host: LeaseHost, replication: ReplicationGlue | None) -> None:
        self.cfg = cfg
        self.packets = packets
        self.host = host
        self.replication = replication
        self.view = LeaseView(cfg.timings.lease, cfg.timings.margin)
        self.endpoint: Endpoint | None = None
        self._retry: asyncio.TimerHandle | None = None
        # The witness's latest word on whether it marks our standby stale (a reply's ``peer_marked``), and when.
        self._peer_marked: tuple[bool, float] | None = None
        self._marked_reply = asyncio.Event()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: Endpoint(self._on_packet), local_addr=("0.0.0.0", 0))
        self.endpoint = proto

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()

    def _can_send(self) -> bool:
        return bool(self.cfg.witness) and self.endpoint is not None and self.endpoint.transport is not None

    def send(self, now: float) -> None:
        """This interval's request: ``acquire`` when the head wants or holds the role, ``query`` otherwise."""
        if not self._can_send():
            return
        op = "acquire" if self.host.role_state in WANTS_LEASE or self.host.probing else "query"
        self._request(op, now)

    def ask_ahead(self, now: float) -> None:
        """``acquire`` from a standby ``ASK_AHEAD_S`` before its peer's dead time ends (``Daemon``): when the peer
        is dead its lease ends then too (``lease_s <= dead_time``), and the witness answers at that end."""
        if self._can_send():
            self._request("acquire", now)

    def release(self) -> None:
        self.view.release()
        if self._can_send():
            self._request("release", time.monotonic())

    def _request(self, op: str, now: float) -> None:
        assert self.endpoint is not None and self.endpoint.transport is not None
        seq = self.packets.next_seq()
        self.view.sent(seq, now, op)
        body: dict[str, Any] = {"node": self.cfg.name, "inc": self.packets.incarnation, "seq": seq, "op": op}
        if self.replication is not None:
            # The active head's word on its standby's copy rides on every renewal (and the release of a
            # handover); a forced takeover asks the witness to overlook this head's own stale mark.
            mark = self.replication.standby_stale_mark()
            if mark is not None:
                body["peer_stale"], body["stale_reason"] = mark[0], mark[1][:200]
            if self.replication.forced and op == "acquire":
                body["force"] = True
        data = encode(KIND_LEASE_REQUEST, body, self.packets.keyring(KIND_LEASE_REQUEST))
        for address in self.cfg.witness:
            self.endpoint.transport.sendto(data, (str(address), self.cfg.witness_port))

    async def confirm_peer_stale(self, stale: bool = True) -> bool:
        """Before a change the standby lacks is acknowledged: the witness has recorded that the standby is stale
        (so it will not grant the standby the lease without --force). False when it could not be told within one
        lease: this head is then cut from both its peer and the witness and is about to step down. With ``stale``
        False: the witness has dropped the mark (before the standby is told that its copy is current)."""
        if not self.cfg.witness or self.endpoint is None:
            return True  # fencing only: nobody to tell (docs/replication.md)
        deadline = time.monotonic() + self.cfg.timings.lease
        while (now := time.monotonic()) < deadline:
            if self.host.role_state != State.ACTIVE:
                return False
            self._marked_reply.clear()
            self.send(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._marked_reply.wait(), min(self.cfg.timings.interval, deadline - now))
            if self._peer_marked is not None and self._peer_marked[0] == stale and self._peer_marked[1] >= now:
                return True
        return False

    def _on_packet(self, data: bytes, addr: Any) -> None:
        body = self.packets.accept(data, KIND_LEASE_REPLY, (self.cfg.witness_name,))
        if body is None or body.get("to") != self.cfg.name:
            return
        now = time.monotonic()
        holder = body.get("holder")
        applied = self.view.reply(
            int(body.get("nonce", -1)),
            bool(body.get("granted")),
            holder if isinstance(holder, str) else None,
            float(body.get("remaining", 0.0)),
            now,
        )
        if not applied:
            return
        self._witness_stale_word(body, now)
        self.host.evaluate(now)
        remaining = float(body.get("remaining", 0.0))
        asking = self.host.role_state == State.TAKEOVER or self.host.probing
        if asking and not body.get("granted") and 0 < remaining < self.cfg.timings.lease:
            # Ask again for the moment the holder's lease runs out at the witness rather than at the next tick (up
            # to one heartbeat interval off every failover): ASK_AHEAD_S before it, so that the witness holds the
            # request and grants it at that very end (``witness.HOLD_S``) instead of one round trip after it. A
            # denial that close to the end (a witness that did not hold it) is asked again just after the end.
            if self._retry is not None:
                self._retry.cancel()
            delay = remaining - ASK_AHEAD_S if remaining > 2 * ASK_AHEAD_S else remaining + 0.0005
            self._retry = asyncio.get_running_loop().call_later(delay, self._retry_lease)

    def _witness_stale_word(self, body: dict[str, Any], now: float) -> None:
        if isinstance(body.get("peer_marked"), bool):
            self._peer_marked = (body["peer_marked"], now)
            self._marked_reply.set()
        stale = body.get("stale")
        # Only a refusal of our own request for the role counts: between two renewals of the active head the
        # witness's mark can lag the active head's word (which reaches this standby directly).
        asked = self.host.role_state == State.STANDBY and self.host.probing
        refused_stale = asked and isinstance(stale, str) and not body.get("granted")
        if refused_stale and self.replication is not None and not self.replication.forced:
            # Cut off from the active head, this standby could not know; the witness does.
            self.replication.witness_says_stale(str(stale))

    def _retry_lease(self) -> None:
        self._retry = None
        if self.host.role_state == State.TAKEOVER or self.host.probing:
            self.send(time.monotonic())
