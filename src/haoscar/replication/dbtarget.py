"""The standby's end of the database channel: accepts only its peer, applies each transaction durably, then acks.

Before authentication a connection gets little: at most ``MAX_PREAUTH`` of them at a time (more are closed at
once), a bounded hello, ``HANDSHAKE_TIMEOUT`` to authenticate, and the live session is replaced only once the new
one proved it is no replay (``dbwire.server_confirm``). Changes are applied as rows checked against this head's own
schema (``dblog``); a large transaction arrives in parts applied inside one SQLite transaction, a full copy in parts
spooled to a private file, so memory holds one frame at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.db.constants import DB_FILE
from haoscar.events import EventBus, Severity
from haoscar.replication import dblog
from haoscar.replication.channel_tls import server_tls
from haoscar.replication.config import ReplConfig
from haoscar.replication.dbwire import Channel, ChannelError, server_confirm, server_handshake, welcome_frame
from haoscar.tlsca import accepted_streams, listening_socket

HANDSHAKE_TIMEOUT = 5.0
MAX_PREAUTH = 4  # connections not yet authenticated; the source needs one
REJECT_REPORT_S = 60.0  # one event per kind of rejection per minute: a flood must not become an alert flood


class DbTarget:
    def __init__(self, cfg: ReplConfig, key: bytes, bus: EventBus, on_stale: Callable[[bool, str], None]) -> None:
        self.cfg = cfg
        self.key = key
        self.bus = bus
        self.on_stale = on_stale
        self.listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._tls: ssl.SSLContext | None = None
        self.conn: sqlite3.Connection | None = None
        self.current: Channel | None = None
        self.last_contact: float | None = None
        self.lsn = 0
        self.epoch = ""
        self.applied = 0
        self.revision = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._preauth = 0
        self._reported: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._open: tuple[str, int, int, dblog.Schema] | None = None  # epoch, lsn, next part, schema
        self._spool_next = 0

    @property
    def spool(self) -> Path:
        return self.cfg.repl_dir / "snapshot.part"

    async def start(self) -> None:
        # This head migrates its own database (schema changes are not replicated): both heads run the same haoscar.
        await asyncio.to_thread(_ensure_schema, self.cfg.state_dir)
        self.conn = dblog.connect(self.cfg.state_dir / DB_FILE)
        self.epoch, self.lsn = dblog.position(self.conn)
        self.revision = dblog.revision(self.conn)
        # Mutual TLS with the cluster CA; this process accepts each connection itself, so the address check and
        # the cap of unauthenticated connections come before any byte of a TLS handshake is read.
        self._tls = server_tls(self.cfg)
        self.listener = listening_socket(str(self.cfg.local_ip), self.cfg.db_port)
        self._acceptor = asyncio.create_task(self._accept_loop(self.listener), name="repl-db-accept")

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._acceptor
            self._acceptor = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.current is not None:
            self.current.close()
            self.current = None
        # Closing the connection ends each session's task; cancelling them would upset asyncio's stream callbacks.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.conn is not None:
            self._abort()
            self.conn.close()
            self.conn = None

    @property
    def connected(self) -> bool:
        return self.current is not None

    def _reject(self, kind: str, message: str, severity: Severity = "warning", **data: object) -> None:
        now = time.monotonic()
        if now - self._reported.get(kind, -REJECT_REPORT_S) < REJECT_REPORT_S:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._reported[kind] = now
        more = self._suppressed.pop(kind, 0)
        suffix = f" ({more} more since the last report)" if more else ""
        self.bus.event(kind, message + suffix, severity, **data)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.05)  # out of descriptors, say: try again rather than end the channel
                continue
            task = asyncio.create_task(self._accept(conn, (str(peer[0]), int(peer[1]))))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _accept(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT  # TLS and the HMAC handshake together
        authenticated = False
        writer: asyncio.StreamWriter | None = None
        handed = False  # once asyncio has the socket it closes it (closing it under asyncio's feet would not do)
        self._preauth += 1
        try:
            if peer[0] != str(self.cfg.peer_ip):
                self._reject("replication.rejected", f"database connection from {peer} refused: only "
                             f"{self.cfg.peer_ip}", address=str(peer))  # fmt: skip
                return
            if self._preauth > MAX_PREAUTH:
                self._reject("replication.rejected", f"database connection from {peer} closed: too many "
                             "unauthenticated connections", address=str(peer))  # fmt: skip
                return
            handed = True
            try:
                reader, writer = await accepted_streams(conn, self._tls, handshake_timeout=HANDSHAKE_TIMEOUT)
                channel = await self._handshake(reader, writer, deadline)
            except ssl.SSLError as exc:
                self._reject("replication.auth_failed", f"database peer {peer[0]}: TLS handshake refused: "
                             f"{exc.reason or exc} (no certificate from the cluster CA?)", "critical")  # fmt: skip
                return
            except ChannelError as exc:
                if exc.auth:
                    self._reject("replication.auth_failed", f"database peer {peer[0]}: {exc}", "critical")
                return
            except (OSError, TimeoutError):
                return  # the TLS handshake timed out or the peer went away: nothing was read
            if channel is None:
                return
            authenticated = True
            self._preauth -= 1
            if self.current is not None:
                self.current.close()  # the source reconnected (and proved it): the old session is dead
            self.current = channel
            self.last_contact = time.monotonic()
            await self._serve_until_closed(channel)
        except (ChannelError, OSError) as exc:
            self.bus.event("replication.disconnected", f"database channel from {self.cfg.peer} closed: {exc}")
        finally:
            if not authenticated:
                self._preauth -= 1
            with contextlib.suppress(Exception):
                if writer is not None:
                    writer.close()
            if not handed:
                conn.close()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> Channel | None:
        left = max(0.1, deadline - time.monotonic())
        channel, hello, nonce = await server_handshake(reader, writer, self.key, left)
        if hello.get("node") != self.cfg.peer:
            self._reject("replication.rejected", f"hello from {str(hello.get('node'))[:64]!r}, not {self.cfg.peer}")
            return None
        assert self.conn is not None
        epoch, lsn = dblog.position(self.conn)
        welcome = {"epoch": epoch, "lsn": lsn, "revision": self.revision}
        writer.write(welcome_frame(self.key, hello, nonce, welcome))
        await writer.drain()
        await server_confirm(channel, max(0.1, deadline - time.monotonic()))
        return channel

    async def _serve(self, channel: Channel) -> None:
        while True:
            body, blob = await channel.recv()
            self.last_contact = time.monotonic()
            reply = await asyncio.to_thread(self._handle, body, blob)
            if channel is not self.current:
                return
            await channel.send(reply)

    async def _serve_until_closed(self, channel: Channel) -> None:
        try:
            await self._serve(channel)
        finally:
            if channel is self.current:
                self._abort()  # a transaction cut off in the middle is not applied (the source resends or copies)

    def _handle(self, body: dict[str, Any], blob: bytes) -> dict[str, Any]:
        op = body.get("op")
        assert self.conn is not None
        try:
            if op == "txn":
                return self._txn(body, blob)
            if op == "snapshot":
                return self._snapshot(body, blob)
            if op == "stale":
                self.on_stale(bool(body.get("stale")), str(body.get("reason", "")))
                return {"ok": True}
            if op == "ping":
                return {"ok": True, "lsn": self.lsn, "epoch": self.epoch}
            return {"ok": False, "error": f"unknown op {str(op)[:40]!r}"}
        except dblog.Gap as gap:
            return {"ok": False, "error": "gap", "expected_epoch": gap.expected_epoch, "expected": gap.expected_lsn}
        except dblog.Refused as exc:
            self._abort()
            self._reject("replication.refused_change", f"a replicated change was refused: {exc}", "critical")
            return {"ok": False, "error": f"refused: {exc}"}
        except (sqlite3.Error, KeyError, ValueError, TypeError, OSError) as exc:
            self._abort()
            return {"ok": False, "error": f"apply failed: {exc}"}

    def _txn(self, body: dict[str, Any], blob: bytes) -> dict[str, Any]:
        """One part of a source transaction: the first opens it here, the last commits it with its LSN."""
        conn = self.conn
        assert conn is not None
        epoch, lsn, part = str(body["epoch"]), int(body["lsn"]), int(body.get("part", 0))
        if part == 0:
            self._abort()
            self._open = (epoch, lsn, 0, dblog.begin(conn, epoch, lsn))
        if self._open is None or self._open[:3] != (epoch, lsn, part):
            self._abort()
            raise ValueError(f"part {part} of transaction {lsn} out of order")
        changes = json.loads(blob) if blob else body.get("changes", [])
        if not isinstance(changes, list):
            raise dblog.Refused("a transaction's changes are not a list")
        dblog.apply_changes(conn, self._open[3], changes)
        if not body.get("last", True):
            self._open = (epoch, lsn, part + 1, self._open[3])
            return {"ok": True, "part": part}
        self._open = None
        dblog.commit(conn, lsn)
        self.lsn = lsn
        self.applied += 1
        return {"ok": True, "lsn": lsn}

    def _snapshot(self, body: dict[str, Any], blob: bytes) -> dict[str, Any]:
        """One part of a full copy, spooled to a private file; the last loads it."""
        assert self.conn is not None
        part = int(body.get("part", 0))
        if part != (0 if part == 0 else self._spool_next):
            raise ValueError(f"part {part} of a full copy out of order")
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if part == 0 else os.O_APPEND)
        fd = os.open(self.spool, flags, 0o600)
        try:
            os.write(fd, blob)
        finally:
            os.close(fd)
        self._spool_next = part + 1
        if not body.get("last", True):
            return {"ok": True, "part": part}
        self._spool_next = -1
        self._abort()
        try:
            dblog.restore(self.conn, self.spool.read_bytes(), str(body["epoch"]))
        finally:
            self.spool.unlink(missing_ok=True)
        self.epoch, self.lsn = str(body["epoch"]), 0
        return {"ok": True, "lsn": 0}

    def _abort(self) -> None:
        self._open = None
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                dblog.abort(self.conn)


def _ensure_schema(state_dir: Path) -> None:
    """Migrate this head's database to this haoscar's schema, in a child process: the daemon stays without
    SQLAlchemy and Alembic (about 25 MB it would keep for its whole life)."""
    code = "import sys; from haoscar.db.session import open_database; open_database(sys.argv[1]).close()"
    done = subprocess.run([sys.executable, "-c", code, str(state_dir)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not bring this head's database to the current schema: {last}")
