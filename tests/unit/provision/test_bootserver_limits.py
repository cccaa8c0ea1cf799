"""The boot server's limits (issue 10, finding 4): stored and checked settings, and the listener that enforces them,
run in-process on loopback addresses (several 127.0.0.x stand for several attacking hosts)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.errors import UserError
from haoscar.lab.defaults import default_spec
from haoscar.provision.bootserver import start
from haoscar.provision.bootserver_gate import Gate
from haoscar.provision.bootserver_limits import BootLimits, effective_limits, load_limits, save_limits
from haoscar.provision.netboot_macs import assign_macs
from haoscar.provision.netboot_sync import netboot_sync

MAC = "52:54:00:aa:00:01"


def test_limits_are_stored_checked_and_overridden(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        assert load_limits(db) == BootLimits()
        save_limits(db, {"idle_timeout": "5", "max_connections": 100})
        assert (load_limits(db).idle_timeout, load_limits(db).max_connections) == (5.0, 100)
        once = effective_limits(db, {"per_client": "4"})
        assert (once.per_client, once.idle_timeout) == (4, 5.0)
        assert load_limits(db).per_client == BootLimits().per_client  # not saved
        effective_limits(db, {"per_client": "4"}, save=True)
        assert load_limits(db).per_client == 4
        for bad, message in (
            (
                {"idle": "5"},
                "limits idle: unknown limit; known: max_connections, per_client, idle_timeout, "
                "header_bytes, body_bytes, body_timeout, send_timeout, shutdown_timeout",
            ),
            ({"idle_timeout": "soon"}, "limits idle_timeout: 'soon' is not a number of seconds"),
            ({"max_connections": "1.5"}, "limits max_connections: '1.5' is not a whole number"),
            ({"per_client": "1", "idle_timeout": "3"}, "limits per_client: 1 is out of range; use 2-10000"),
            ({"idle_timeout": "0"}, "limits idle_timeout: 0 is out of range; use 1-3600"),
        ):
            with pytest.raises(UserError) as info:
                effective_limits(db, bad, save=True)
            assert info.value.message == message
        assert load_limits(db).idle_timeout == 5.0  # a refused request wrote nothing
    finally:
        db.close()


def _state(tmp_path: Path) -> Path:
    db = open_database(tmp_path)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", MAC, "test")])
        netboot_sync(db, tmp_path)
    finally:
        db.close()
    return tmp_path


Body = Callable[[Gate, int], Awaitable[None]]


def _serve(state: Path, limits: BootLimits, body: Body) -> None:
    async def main() -> None:
        db = open_database(state)
        runner, gate = await start(db, state, ["127.0.0.1"], 0, limits)
        try:
            await body(gate, gate.sockets()[0][1])
        finally:
            gate.stop()
            await runner.cleanup()
            db.close()

    asyncio.run(main())


async def _get(port: int, path: str, source: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: boot\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 10) == b""
    except ConnectionResetError:
        return True


def test_caps_evict_idle_connections_and_a_node_still_gets_its_script(tmp_path: Path) -> None:
    limits = BootLimits(max_connections=8, per_client=3, idle_timeout=30)

    async def body(gate: Gate, port: int) -> None:
        # One host: its fourth connection is reset at once; its first three stay.
        one = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0)) for _ in range(4)]
        assert await _closed_by_server(one[3][0])
        # Four hosts hold the total cap (8) with idle connections ...
        idle = [
            await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{3 + i % 2}", 0)) for i in range(6)
        ]
        await asyncio.sleep(0.2)
        assert len(gate.conns) == 8 and gate.counters.refused == 1
        # ... and a node still gets its script: the oldest idle connection (127.0.0.2's first) made room.
        answer = await _get(port, f"/boot/{MAC}.ipxe", source="127.0.0.9")
        assert answer.startswith(b"HTTP/1.1 200") and b"#!ipxe" in answer
        assert await _closed_by_server(one[0][0])
        assert gate.counters.evicted >= 1
        for _, writer in one + idle:
            writer.close()

    _serve(_state(tmp_path), limits, body)


def test_idle_and_trickling_connections_are_closed_and_sizes_limited(tmp_path: Path) -> None:
    limits = BootLimits(idle_timeout=1, header_bytes=1024, body_bytes=2048)

    async def body(gate: Gate, port: int) -> None:
        began = time.monotonic()
        idle_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)

        async def trickle() -> None:
            for byte in b"GET /boot.ipxe HTTP/1.1\r\nHost: boot\r\nX-Slow: " + b"a" * 100:
                slow_writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        task = asyncio.ensure_future(trickle())
        assert await _closed_by_server(idle_reader)
        assert await _closed_by_server(slow_reader)
        task.cancel()
        assert time.monotonic() - began < 9  # well before the client's own 10 s wait: the server cut them
        big = await _get(port, "/boot.ipxe?" + "a" * 2000)
        assert big.startswith(b"HTTP/1.0 400 Bad Request"), big[:100]  # aiohttp's answer to a head it cannot parse
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        form = b"stage=image&detail=" + b"x" * 4000
        writer.write(
            f"POST /install/{MAC}/progress HTTP/1.1\r\nHost: boot\r\nContent-Type: application/x-www-form-urlencoded"
            f"\r\nContent-Length: {len(form)}\r\nX-Haoscar-Token: t\r\n\r\n".encode()
            + form
        )
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 413")
        writer.close()
        assert len(gate.conns) <= 1

    _serve(_state(tmp_path), limits, body)


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:

        async def main() -> None:
            db = open_database(tmp_path)
            try:
                with pytest.raises(UserError, match=f"binds: cannot listen on 127.0.0.1 port {port}"):
                    await start(db, tmp_path, ["127.0.0.1"], port, BootLimits())
            finally:
                db.close()

        asyncio.run(main())
    finally:
        taken.close()


def test_kernels_are_sent_whole_through_the_gate(tmp_path: Path) -> None:
    state = _state(tmp_path)
    kernel = state / "netboot/boot/oscarimage/vmlinuz"
    kernel.parent.mkdir(parents=True, exist_ok=True)
    kernel.write_bytes(bytes(range(256)) * (12 << 12))  # 12 MiB: sent with sendfile, after the handler returned

    async def body(gate: Gate, port: int) -> None:
        answer = await _get(port, "/files/oscarimage/vmlinuz")
        head, _, data = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and data == kernel.read_bytes()
        assert gate.counters.accepted == 1 and gate.counters.evicted == gate.counters.refused == 0

    _serve(state, BootLimits(), body)
