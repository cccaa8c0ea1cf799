"""The lease asked for ahead of the dead time's end: the witness holds an ``acquire`` that arrives a few
milliseconds before it could be granted and answers it at that end (``Witness.hold_for``, ``witness._Protocol``);
the standby asks ``ASK_AHEAD_S`` before its dead time ends (``EarlyProbe``) and keeps a grant that comes a
little early for the takeover."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from haoscar.ha.config import Timings
from haoscar.ha.early_probe import EarlyProbe
from haoscar.ha.lease import LeaseTable
from haoscar.ha.lease_client import ASK_AHEAD_S
from haoscar.ha.wire import KIND_LEASE_REQUEST, decode, encode
from haoscar.ha.witness import HOLD_S, Witness, _Protocol
from haoscar.spec.models import HA

KEY = b"w" * 32


def _witness(lease: float = 0.3) -> Witness:
    return Witness(name="witness", key=KEY, heads=frozenset({"head1", "head2"}), table=LeaseTable(lease, started=0.0))


def _request(node: str, seq: int, op: str = "acquire", **extra: Any) -> bytes:
    return encode(KIND_LEASE_REQUEST, {"node": node, "inc": 1, "seq": seq, "op": op, **extra}, KEY)


def test_how_long_until_a_grant_changes_nothing() -> None:
    table = LeaseTable(lease=0.3, started=0.0)
    assert table.wait_before_grant("head2", 0.1) == pytest.approx(
        0.2
    )  # the start-up wait: nothing granted for one lease
    assert table.request("head1", "acquire", 1.0).granted
    assert table.wait_before_grant("head1", 1.1) == 0.0  # its own renewal: at once
    assert table.wait_before_grant("head2", 1.1) == pytest.approx(0.2)  # the holder's lease left
    assert table.wait_before_grant("head2", 1.3) == 0.0
    table.stale["head2"] = "missed changes"
    assert table.wait_before_grant("head2", 1.3) is None  # refused as stale, whenever asked
    assert table.wait_before_grant("head2", 1.3, force=True) == 0.0
    assert (table.holder, table.expires, table.grants) == ("head1", 1.3, 1)  # nothing of that changed the table


def test_only_an_acquire_just_before_the_end_is_held() -> None:
    witness = _witness()
    assert witness.handle(_request("head1", 1), now=1.0) is not None  # head1 holds it until 1.3
    near = witness.admit(_request("head2", 1))
    far = witness.admit(_request("head2", 2))
    query = witness.admit(_request("head2", 3, op="query"))
    renewal = witness.admit(_request("head1", 2))
    assert near is not None and far is not None and query is not None and renewal is not None
    assert witness.hold_for(near, 1.3 - 0.003) == pytest.approx(0.003)
    assert witness.hold_for(far, 1.3 - 2 * HOLD_S) == 0.0  # too early: denied now, as before
    assert witness.hold_for(query, 1.3 - 0.003) == 0.0
    assert witness.hold_for(renewal, 1.3 - 0.003) == 0.0  # the holder's own renewal is answered at once
    witness.table.stale["head2"] = "missed changes"
    assert witness.hold_for(near, 1.3 - 0.003) == 0.0  # a stale head is refused now, not later


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((time.monotonic(), data))


def test_a_held_request_is_granted_at_the_end_of_the_holders_lease_never_before() -> None:
    witness = _witness()

    async def scenario() -> tuple[float, list[tuple[float, bytes]], list[tuple[float, bytes]]]:
        protocol = _Protocol(witness, {})
        transport = _Transport()
        protocol.transport = transport  # type: ignore[assignment]
        end = time.monotonic() + 0.003
        witness.table.holder, witness.table.expires = "head1", end  # head1's lease ends in 3 ms
        protocol.datagram_received(_request("head2", 1), ("198.18.0.2", 40000))
        at_once = list(transport.sent)
        await asyncio.sleep(0.05)
        return end, at_once, transport.sent

    end, at_once, sent = asyncio.run(scenario())
    assert at_once == []  # not denied: held
    assert len(sent) == 1
    when, reply = sent[0]
    body = decode(reply, KEY).body
    assert (body["to"], body["nonce"], body["granted"], body["holder"]) == ("head2", 1, True, "head2")
    assert when >= end  # the grant never comes while head1's lease runs


def test_a_newer_request_replaces_the_held_one_and_a_renewal_in_between_wins() -> None:
    witness = _witness()

    async def scenario() -> list[bytes]:
        protocol = _Protocol(witness, {})
        transport = _Transport()
        protocol.transport = transport  # type: ignore[assignment]
        assert witness.handle(_request("head1", 1), now=time.monotonic() - 0.3 + 0.004) is not None
        protocol.datagram_received(_request("head2", 1), ("198.18.0.2", 40000))
        protocol.datagram_received(_request("head2", 2), ("198.18.0.2", 40000))  # replaces the first
        protocol.datagram_received(_request("head1", 2), ("198.18.0.1", 40000))  # head1 renews: alive after all
        await asyncio.sleep(0.05)
        return [data for _when, data in transport.sent]

    replies = [decode(data, KEY).body for data in asyncio.run(scenario())]
    assert [(r["to"], r["nonce"], r["granted"]) for r in replies] == [("head1", 2, True), ("head2", 2, False)]
    assert witness.table.holder == "head1"


class _Vip:
    async def probe(self, timeout: float) -> str | None:
        await asyncio.sleep(timeout)
        return None


def test_the_standby_asks_ahead_once_per_silence_and_keeps_that_grant() -> None:
    timings = replace(Timings.from_ha(HA(heartbeat_interval=0.1, dead_time=0.3, lease_s=0.3)), dead=0.1, lease=0.1)
    asked: list[float] = []

    async def scenario() -> tuple[float, bool, bool, bool]:
        probe = EarlyProbe(_Vip, timings, asked.append)
        heard = time.monotonic()
        probe.watch(heard, heard, wanted=True)
        await asyncio.sleep(0.1 - ASK_AHEAD_S - 0.01)
        before = probe.asked_for(heard)
        probe.watch(time.monotonic(), heard, wanted=True)  # evaluations in between change nothing
        await asyncio.sleep(0.02)
        return heard, before, probe.asked_for(heard), probe.asked_for(heard + 0.05)

    heard, before, after, other_silence = asyncio.run(scenario())
    assert not before and after and not other_silence
    assert len(asked) == 1 and asked[0] >= heard + 0.1 - ASK_AHEAD_S


def test_no_ask_for_a_silence_a_heartbeat_ended() -> None:
    timings = replace(Timings.from_ha(HA(heartbeat_interval=0.1, dead_time=0.3, lease_s=0.3)), dead=0.1, lease=0.1)
    asked: list[float] = []

    async def scenario() -> None:
        probe = EarlyProbe(_Vip, timings, asked.append)
        heard = time.monotonic()
        probe.watch(heard, heard, wanted=True)
        await asyncio.sleep(0.1 - timings.failover_probe_timeout - 0.001)  # the probe has started, the ask is due
        probe.watch(time.monotonic(), time.monotonic(), wanted=True)  # heard again just before the ask
        await asyncio.sleep(0.01)
        probe.watch(time.monotonic(), None, wanted=True)  # then no longer standby

    asyncio.run(scenario())
    assert asked == []
