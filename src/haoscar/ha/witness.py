"""``haoscar witness run``: the lease server on a third host (see ``haoscar.ha.lease`` and docs/ha-safety.md).

It answers authenticated UDP requests from the two heads on every address it is given; a request is processed once
even when it arrives on two addresses (the replay window drops the second copy).

It also keeps the active head's word on whether the standby's replicated copy is stale (``LeaseTable.mark``),
in ``state_file`` (written and fsync'd before the reply that confirms a mark), so that a restarted witness still
refuses the lease to a stale standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from haoscar.ha.keyset import KeySet
from haoscar.ha.lease import LeaseTable
from haoscar.ha.peer import DropCounters
from haoscar.ha.precise_timer import call_at_precisely
from haoscar.ha.replay import ReplayWindow, admit
from haoscar.ha.wire import KIND_LEASE_REPLY, KIND_LEASE_REQUEST, KeyLike, Packet, Rejected, encode
from haoscar.replication.state import write_json_atomic

# An acquire that arrives at most this long before the lease could be granted is held and answered at that moment
# (``Witness.hold_for``). A standby asks ~3 ms before its dead time ends (``lease_client.ASK_AHEAD_S``); without
# the hold it would be denied and ask again after the end, one more round trip on every failover.
HOLD_S = 0.005


@dataclass
class Witness:
    name: str
    key: KeyLike  # the lease keyring: the only key a witness holds
    heads: frozenset[str]
    table: LeaseTable
    log: IO[str] = field(default_factory=lambda: sys.stderr)
    replay: ReplayWindow = field(default_factory=ReplayWindow)
    drops: DropCounters = field(default_factory=DropCounters)
    incarnation: int = field(default_factory=time.time_ns)
    seq: int = 0
    last_holder: str | None = None
    state_file: Path | None = None  # where the stale marks survive a restart (None: memory only)
    keyset: KeySet | None = None  # where ``key`` is reloaded from on SIGHUP (None: a fixed key)

    def __post_init__(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            try:
                marks = json.loads(self.state_file.read_text())["stale"]
                self.table.stale.update({str(k): str(v) for k, v in marks.items() if k in self.heads})
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # Unreadable marks: refuse nothing we cannot justify, but say so loudly.
                self._log(f"stale marks in {self.state_file} unreadable ({exc}); starting without them")
        for head, why in sorted(self.table.stale.items()):
            self._log(f"{head} is marked stale: {why}")

    def handle(self, data: bytes, now: float) -> bytes | None:
        """One datagram in, at most one reply out (at once: no hold). Bad packets are counted and answered with
        nothing."""
        packet = self.admit(data)
        return None if packet is None else self.answer(packet, now)

    def admit(self, data: bytes) -> Packet | None:
        """The request in ``data`` when it is authentic, from a head and fresh; counted and None otherwise."""
        try:
            return admit(data, self.key, KIND_LEASE_REQUEST, self.heads, self.replay)
        except Rejected as exc:
            self.drops.drop(exc.reason)
            return None

    def hold_for(self, packet: Packet, now: float) -> float:
        """How long to hold ``packet`` before answering it (0: answer now). An ``acquire`` that arrives less than
        ``HOLD_S`` before it could be granted (the other head's lease, or the start-up wait, ends) is answered at
        that end instead of denied: the requester need not ask again, and the grant still comes only after the
        end on this clock (docs/ha-safety.md, "The witness answers at the end of the lease")."""
        if packet.body.get("op") != "acquire":
            return 0.0
        wait = self.table.wait_before_grant(packet.sender, now, packet.body.get("force") is True)
        return wait if wait is not None and 0.0 < wait <= HOLD_S else 0.0

    def answer(self, packet: Packet, now: float) -> bytes:
        """The reply to an admitted request, decided at ``now``."""
        body = packet.body
        op = str(body.get("op", "query"))
        was_holder = self.table.holds(packet.sender, now)
        before = dict(self.table.stale)
        grant = self.table.request(
            packet.sender, op if op in ("acquire", "release", "query") else "query", now, body.get("force") is True
        )
        marked = None
        if isinstance(body.get("peer_stale"), bool) and op in ("acquire", "release"):
            peer = next((h for h in sorted(self.heads) if h != packet.sender), packet.sender)
            reason = str(body.get("stale_reason") or "")[:300]
            marked = self.table.mark(
                packet.sender, peer, stale=body["peer_stale"], reason=reason, was_holder=was_holder, now=now
            )
        if self.table.stale != before and not self._save(before):
            marked = None  # not durable: do not let the active head believe the witness will remember
        if grant.holder != self.last_holder:
            self._log(
                f"lease holder {self.last_holder or 'none'} -> {grant.holder or 'none'} (op {op} from {packet.sender})"
            )
            self.last_holder = grant.holder
        self.seq += 1
        reply: dict[str, Any] = {
            "node": self.name,
            "inc": self.incarnation,
            "seq": self.seq,
            "to": packet.sender,
            "nonce": packet.seq,
            "granted": grant.granted,
            "holder": grant.holder,
            "remaining": round(grant.remaining, 4),
            "stale": grant.stale,
        }
        if marked is not None:
            reply["peer_marked"] = marked
        return encode(KIND_LEASE_REPLY, reply, self.key)

    def reload_keys(self) -> None:
        if self.keyset is None:
            return
        result = self.keyset.reload()
        self._log(f"keys reloaded: {result['keys']}" if result["ok"] else f"keys NOT reloaded: {result['error']}")

    def _save(self, before: dict[str, str]) -> bool:
        for head in sorted(set(before) ^ set(self.table.stale)):  # a changed reason alone is saved, not logged
            why = self.table.stale.get(head)
            self._log(f"{head} marked stale: {why}" if why is not None else f"{head} no longer marked stale")
        if self.state_file is None:
            return True
        try:
            write_json_atomic(self.state_file, {"stale": self.table.stale})
            return True
        except OSError as exc:
            self._log(f"stale marks not saved to {self.state_file}: {exc}")
            return False

    def _log(self, message: str) -> None:
        with contextlib.suppress(Exception):
            self.log.write(f"<6>haoscar-witness[{self.name}]: {message}\n")
            self.log.flush()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, witness: Witness, held: dict[str, asyncio.TimerHandle]) -> None:
        self.witness = witness
        self.transport: asyncio.DatagramTransport | None = None
        self.held = held  # per head, its request held to the end of the lease (shared by every address)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a DatagramTransport (isinstance fails on the selector's private class).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = time.monotonic()
        packet = self.witness.admit(data)
        if packet is None:
            return
        wait = self.witness.hold_for(packet, now)
        if wait <= 0.0:
            self._send(self.witness.answer(packet, now), addr)
            return
        # At most one held request per head (authenticated, so at most two in all): a newer one replaces it.
        older = self.held.pop(packet.sender, None)
        if older is not None:
            older.cancel()
        loop = asyncio.get_running_loop()
        # A hair after the end (at the end itself the lease still counts as held: ``now >= expires`` frees it), on
        # a precise timer (an asyncio timer runs up to 1 ms late: precise_timer.py).
        when = loop.time() + wait + 1e-5
        self.held[packet.sender] = call_at_precisely(loop, when, self._release_held, packet, addr)

    def _release_held(self, packet: Packet, addr: tuple[str | Any, int]) -> None:
        self.held.pop(packet.sender, None)
        self._send(self.witness.answer(packet, time.monotonic()), addr)

    def _send(self, reply: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(witness: Witness, addresses: Iterable[str], port: int, stop: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    transports = []
    held: dict[str, asyncio.TimerHandle] = {}
    for address in addresses:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(witness, held), local_addr=(address, port))
        transports.append(transport)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, witness.reload_keys)  # a key rotation's steps
    witness._log(f"serving leases of {witness.table.lease:g} s on {', '.join(addresses)} port {port}")
    try:
        await stop.wait()
    finally:
        for handle in held.values():
            handle.cancel()
        for transport in transports:
            transport.close()
        witness._log("stopped")
