"""Heartbeats that arrive while this daemon's event loop is busy are delivered before it decides anything about
its peer's silence: a stall of this head must never read as the peer being silent on every network."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from haoscar.events import EventBus
from haoscar.ha.keyset import KeySet
from haoscar.ha.peer import PeerView
from haoscar.ha.transport import Endpoint, HeartbeatTransport, Packets

SECRET = b"k" * 32


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cfg(name: str, peer: str, port: int) -> Any:
    link = SimpleNamespace(network="private", local=IPv4Address("127.0.0.1"), peer=IPv4Address("127.0.0.1"))
    return SimpleNamespace(name=name, peer_name=peer, port=port, links=(link,))


def test_heartbeats_queued_during_a_stall_are_read_before_a_decision() -> None:
    async def run() -> tuple[int, int, list[int], float | None]:
        port = _free_port()
        heard: list[int] = []
        view = PeerView(("private",))

        def on_heartbeat(network: str, body: dict[str, Any]) -> None:
            heard.append(int(body["seq"]))
            view.heard(network, body, 1000.0 + len(heard), my_incarnation=1)

        here = HeartbeatTransport(
            _cfg("head2", "head1", port), Packets(KeySet.of_secret(SECRET), EventBus("head2"), 1), on_heartbeat
        )
        await here.bind()
        # head1's heartbeats reach head2's socket while head2's loop is busy (no await: the loop cannot read them)
        peer = Packets(KeySet.of_secret(SECRET), EventBus("head1"), 1)
        sender = HeartbeatTransport(_cfg("head1", "head2", port), peer, lambda _n, _b: None)
        sender.endpoints = {"private": here.endpoints["private"]}  # head1 sends from any socket; head2 verifies
        for _ in range(3):
            sender.send({"node": "head1", "inc": 1, "state": "active"}, 0.0)
        before = len(heard)
        drained = here.drain()
        again = here.drain()
        here.close()
        assert before == 0  # the loop had no turn to read them
        return drained, again, heard, view.newest()

    drained, again, heard, newest = asyncio.run(run())
    assert heard == sorted(heard) and len(heard) == 3  # every one, in order, each verified
    assert drained == 3 and again == 0
    assert newest is not None


def test_a_flood_does_not_hold_the_caller() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    got: list[bytes] = []
    endpoint = Endpoint(lambda data, _addr: got.append(data), receiver)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(20):
            sender.sendto(b"x%d" % i, receiver.getsockname())
    assert endpoint.drain(limit=5) == 5
    assert got == [b"x0", b"x1", b"x2", b"x3", b"x4"]
    assert endpoint.drain() == 15
    assert endpoint.drain() == 0
    receiver.close()
