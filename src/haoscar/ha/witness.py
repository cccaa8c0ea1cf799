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
from haoscar.ha.replay import ReplayWindow, admit
from haoscar.ha.wire import KIND_LEASE_REPLY, KIND_LEASE_REQUEST, KeyLike, Rejected, encode
from haoscar.replication.state import write_json_atomic


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
        """One datagram in, at most one reply out. Bad packets are counted and answered with nothing."""
        try:
            packet = admit(data, self.key, KIND_LEASE_REQUEST, self.heads, self.replay)
        except Rejected as exc:
            self.drops.drop(exc.reason)
            return None
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
    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a DatagramTransport (isinstance fails on the selector's private class).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.witness.handle(data, time.monotonic())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(witness: Witness, addresses: Iterable[str], port: int, stop: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    transports = []
    for address in addresses:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(witness), local_addr=(address, port))
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
        for transport in transports:
            transport.close()
        witness._log("stopped")
