"""``haoscar ha status`` on one head shows the other: the peer's read-only status listener over HTTP."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from haoscar.ha.api import start_status_listener
from haoscar.ha.both_heads import both_heads, fetch_peer


class _Head:
    def status(self) -> dict[str, Any]:
        return {"node": "head2", "state": "standby", "lease": {"holder": "head1"}}

    async def switchover(self) -> Any:
        raise AssertionError("the status listener must never change anything")

    failback = takeover = switchover


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_peer_status_is_read_and_a_dead_address_does_not_hide_it() -> None:
    async def scenario() -> dict[str, Any]:
        port = _free_port()
        listener = await start_status_listener(["127.0.0.1"], port, _Head())
        try:
            dead = f"http://127.0.0.1:{_free_port()}/status"  # nothing listens: refused at once
            local = {"node": "head1", "peer": {"node": "head2", "status_urls": [dead, f"{listener.urls[0]}/status"]}}
            return await asyncio.to_thread(both_heads, local, 1.0)
        finally:
            await listener.close()

    both = asyncio.run(scenario())
    assert both["local"]["node"] == "head1"
    assert both["peer"]["reachable"] and both["peer"]["state"] == "standby"
    assert both["peer"]["lease"]["holder"] == "head1"


def test_the_status_listener_refuses_changes_and_wildcards() -> None:
    async def post() -> int:
        port = _free_port()
        listener = await start_status_listener(["127.0.0.1"], port, _Head())
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
            return int(line.split()[1])
        finally:
            await listener.close()

    assert asyncio.run(post()) in (404, 405)
    from haoscar.errors import UserError

    with pytest.raises(UserError, match="every interface"):
        asyncio.run(start_status_listener(["0.0.0.0"], _free_port(), _Head()))


def test_an_unreachable_peer_is_reported_with_the_reason() -> None:
    peer = fetch_peer([f"http://127.0.0.1:{_free_port()}/status"], timeout=0.5)
    assert peer == {"reachable": False, "error": peer["error"]} and "refused" in peer["error"].lower()
    assert not fetch_peer([])["reachable"]
