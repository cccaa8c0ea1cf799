"""The standby's end of the database channel: accepts only its peer, applies each transaction durably, then acks."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from haoscar.db.constants import DB_FILE
from haoscar.events import EventBus
from haoscar.replication import dblog
from haoscar.replication.config import ReplConfig
from haoscar.replication.dbwire import Channel, ChannelError, server_handshake, welcome_frame

HANDSHAKE_TIMEOUT = 5.0


class DbTarget:
    def __init__(self, cfg: ReplConfig, key: bytes, bus: EventBus, on_stale: Callable[[bool, str], None]) -> None:
        self.cfg = cfg
        self.key = key
        self.bus = bus
        self.on_stale = on_stale
        self.server: asyncio.Server | None = None
        self.conn: sqlite3.Connection | None = None
        self.current: Channel | None = None
        self.last_contact: float | None = None
        self.lsn = 0
        self.epoch = ""
        self.applied = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.conn = dblog.connect(self.cfg.state_dir / DB_FILE)
        self.epoch, self.lsn = dblog.position(self.conn)
        self.server = await asyncio.start_server(self._accept, str(self.cfg.local_ip), self.cfg.db_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None
        if self.current is not None:
            self.current.close()
            self.current = None
        # Closing the connection ends each session's task; cancelling them would upset asyncio's stream callbacks.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def connected(self) -> bool:
        return self.current is not None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        try:
            if not peer or peer[0] != str(self.cfg.peer_ip):
                self.bus.event(
                    "replication.rejected", f"database connection from {peer} refused: only {self.cfg.peer_ip}",
                    "warning", address=str(peer),
                )  # fmt: skip
                return
            try:
                channel, hello, nonce = await server_handshake(reader, writer, self.key, HANDSHAKE_TIMEOUT)
            except ChannelError as exc:
                if exc.auth:
                    self.bus.event("replication.auth_failed", f"database peer {peer[0]}: {exc}", "critical")
                return
            if hello.get("node") != self.cfg.peer:
                self.bus.event(
                    "replication.rejected", f"hello from {hello.get('node')!r}, not {self.cfg.peer}", "warning"
                )
                return
            if self.current is not None:
                self.current.close()  # the source reconnected: the old session is dead
            self.current = channel
            assert self.conn is not None
            self.epoch, self.lsn = dblog.position(self.conn)
            writer.write(welcome_frame(self.key, hello, nonce, {"epoch": self.epoch, "lsn": self.lsn}))
            await writer.drain()
            self.last_contact = time.monotonic()
            await self._serve(channel)
        except (ChannelError, OSError) as exc:
            self.bus.event("replication.disconnected", f"database channel from {self.cfg.peer} closed: {exc}")
        finally:
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, channel: Channel) -> None:
        while True:
            body, blob = await channel.recv()
            self.last_contact = time.monotonic()
            reply = await asyncio.to_thread(self._handle, body, blob)
            if channel is not self.current:
                return
            await channel.send(reply)

    def _handle(self, body: dict[str, Any], blob: bytes) -> dict[str, Any]:
        op = body.get("op")
        conn = self.conn
        assert conn is not None
        try:
            if op == "txn":
                lsn = int(body["lsn"])
                dblog.apply_transaction(conn, str(body["epoch"]), lsn, dblog.decode_writes(body["writes"]))
                self.lsn = lsn
                self.applied += 1
                return {"ok": True, "lsn": lsn}
            if op == "snapshot":
                dblog.restore(conn, blob, str(body["epoch"]))
                self.epoch, self.lsn = str(body["epoch"]), 0
                return {"ok": True, "lsn": 0}
            if op == "stale":
                self.on_stale(bool(body.get("stale")), str(body.get("reason", "")))
                return {"ok": True}
            if op == "ping":
                return {"ok": True, "lsn": self.lsn, "epoch": self.epoch}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except dblog.Gap as gap:
            return {"ok": False, "error": "gap", "expected_epoch": gap.expected_epoch, "expected": gap.expected_lsn}
        except (sqlite3.Error, KeyError, ValueError, TypeError) as exc:
            return {"ok": False, "error": f"apply failed: {exc}"}
