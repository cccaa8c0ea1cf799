"""The active head's end of the database channel.

Every process that writes the cluster database on this head hands each transaction to this server over a local
UNIX socket just before it commits (``dbhook``); the transactions arrive one at a time because SQLite's write lock
is held meanwhile. While the standby is in sync, each gets the next LSN, is shipped, and is acknowledged only after
the standby has it on disk: only then does the writer commit. When the standby does not answer within the ack
timeout (or refuses the transaction), this head goes on alone: the writer is told to commit anyway, the standby is
marked stale, and a background task reconnects and sends a full copy — taken while holding the write lock, so no
transaction can fall between the copy and the first shipped LSN.

A transaction of any size replicates: the writer streams it as lines of at most about ``PART_BYTES`` each, and each
line travels to the standby as one frame (acknowledged one by one, so neither side holds more than one part); the
standby applies the parts inside one transaction and commits with the last. Full copies travel in parts too.

"Goes on alone" only once the witness has recorded that the standby is stale (``confirm_stale``, the HA daemon's
lease channel): otherwise a standby cut off before this head crashed would take over without the changes
acknowledged meanwhile. A head that can tell neither its standby nor the witness refuses the change (the writer
gets an error, nothing is acknowledged) - it is about to lose its lease and step down anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from haoscar.db.constants import DB_FILE
from haoscar.errors import UserError
from haoscar.events import EventBus
from haoscar.replication import dblog
from haoscar.replication.channel_tls import client_tls
from haoscar.replication.config import DB_SOCKET, ReplConfig
from haoscar.replication.dbwire import PART_BYTES, Channel, ChannelError, client_handshake
from haoscar.sockpath import socket_name

SOCKET = DB_SOCKET
RECONNECT_S = 0.5
PING_S = 1.0
# One line from a local writer: a part of a transaction (``dbhook`` cuts them at about PART_BYTES).
LINE_LIMIT = 4 * PART_BYTES + 1024 * 1024
APPLY_BYTES_PER_S = 5e6  # a slow standby applies this much per second; the ack timeout grows with a part's size


class DbSource:
    def __init__(
        self,
        cfg: ReplConfig,
        key: bytes,
        bus: EventBus,
        on_degraded: Callable[[str, bool], None],
        confirm_stale: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self.bus = bus
        self.on_degraded = on_degraded  # (reason, auth problem): the manager marks the standby stale
        # (why the standby lacks a change) -> True once the standby is marked stale here and at the witness
        self.confirm_stale = confirm_stale
        self.channel: Channel | None = None
        self.synced = False
        self.need_copy = True
        self.epoch = ""
        self.lsn = 0
        self.shipped = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._auth_reported = False
        self.on_synced: Callable[[], None] = lambda: None
        self._behind = False

    @property
    def socket_path(self) -> Any:
        return self.cfg.repl_dir / SOCKET

    async def start(self) -> None:
        self.cfg.repl_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old = os.umask(0o077)  # only root may hand transactions to the standby
        try:
            with socket_name(self.socket_path) as name:  # any state-dir length (see haoscar.sockpath)
                self._server = await asyncio.start_unix_server(self._local, name, limit=LINE_LIMIT)
        finally:
            os.umask(old)
        self._task = asyncio.create_task(self._connect_loop(), name="repl-db-connect")

    async def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # writers stop waiting for us from now on
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._task is not None:
            task, self._task = self._task, None
            while not task.done():
                task.cancel()  # again when Python 3.11's wait_for swallowed it (its inner step finished meanwhile)
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._drop()

    def _drop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.synced = False

    # -- local writers ----------------------------------------------------------------------------------------
    async def _local(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            reply = await self.handle(json.loads(line), _parts(reader))
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ValueError, OSError) as exc:
            # The writer gets no reply and treats that as unreplicated: the standby must not count as in sync.
            self.degrade(f"a local writer's transaction could not be read: {exc}")
        finally:
            writer.close()

    async def handle(
        self, request: dict[str, Any], more: AsyncIterator[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """One transaction from a local writer: ``request`` and, for a large one, its further parts (``part``
        requests; the one with ``op`` ``txn`` is the last)."""
        reply = await self._ship(request, more or _none())
        if reply["replicated"] or self.confirm_stale is None or await self.confirm_stale(str(reply.get("reason"))):
            return reply
        return {
            "replicated": False,
            "refused": True,
            "reason": f"neither the standby {self.cfg.peer} nor the witness could be told of this change "
            f"({reply.get('reason', 'standby unreachable')}); this head is cut off and must not acknowledge it",
        }

    async def _ship(self, first: dict[str, Any], more: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        if first.get("op") == "dirty":
            self.degrade(f"a writer could not replicate a transaction: {first.get('reason')}")
            return {"replicated": False, "reason": str(first.get("reason"))}
        if not self.synced:
            # Never wait for the lock here: a full copy holds it while waiting for this writer's SQLite lock.
            await _drain(first, more)
            self._missed("a change was committed while the standby was not in sync")
            return {"replicated": False, "reason": "the standby is not in sync; it gets a full copy later"}
        async with self._lock:
            if not self.synced or self.channel is None:
                await _drain(first, more)
                self.need_copy = True
                return {"replicated": False, "reason": "the standby is not in sync; it gets a full copy later"}
            lsn = self.lsn + 1
            request, part = first, 0
            while True:
                if request.get("op") == "dirty":  # given up half-way: dropping the session drops the open parts
                    self.degrade(f"a writer could not replicate a transaction: {request.get('reason')}")
                    return {"replicated": False, "reason": str(request.get("reason"))}
                last = request.get("op") != "part"
                blob = json.dumps(request.get("changes") or [], separators=(",", ":")).encode()
                frame = {"op": "txn", "epoch": self.epoch, "lsn": lsn, "part": part, "last": last}
                try:
                    reply = await self.channel.request(
                        frame, self.cfg.ack_timeout_s + len(blob) / APPLY_BYTES_PER_S, blob
                    )
                except ChannelError as exc:
                    self.degrade(f"standby did not acknowledge transaction {lsn}: {exc}")
                    reply = {"ok": False, "error": str(exc)}
                if not reply.get("ok"):
                    if self.channel is not None:
                        self.degrade(f"standby refused transaction {lsn}: {reply.get('error')}")
                    if not last:
                        await _drain({"op": "part"}, more)
                    return {"replicated": False, "reason": str(reply.get("error"))}
                if last:
                    break
                request, part = await anext(more, {"op": "txn", "changes": []}), part + 1
            self.lsn = lsn
            self.shipped += 1
            return {"replicated": True, "lsn": lsn}

    def degrade(self, reason: str, auth: bool = False) -> None:
        self._drop()
        self.last_error = reason
        self._missed(reason, auth)

    def _missed(self, reason: str, auth: bool = False) -> None:
        """The standby lacks a committed change from now on: it is stale until a full copy (reported once)."""
        self.need_copy = True
        if not self._behind or auth:
            self._behind = True
            self.on_degraded(reason, auth)
        self._wake.set()

    # -- the standby ------------------------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        while True:
            if self.channel is None:
                try:
                    await self._connect()
                    self._auth_reported = False
                except ChannelError as exc:
                    self.last_error = f"database channel to {self.cfg.peer}: {exc}"
                    if exc.auth and not self._auth_reported:
                        self._auth_reported = True
                        self._missed(self.last_error, auth=True)
                except OSError as exc:
                    self.last_error = f"database channel to {self.cfg.peer}: {exc.strerror or exc}"
                except Exception as exc:  # a bug must not end replication: report it and retry
                    self.last_error = f"database channel to {self.cfg.peer}: {type(exc).__name__}: {exc}"
                    self.bus.log_error(self.last_error)
            elif self._lock.locked() is False:
                async with self._lock:
                    if self.channel is not None:
                        try:
                            await self.channel.request({"op": "ping"}, self.cfg.ack_timeout_s)
                        except ChannelError as exc:
                            if self.synced:
                                # Nothing was lost yet (no write went unacknowledged): just reconnect.
                                self.bus.event("replication.disconnected", f"standby {self.cfg.peer}: {exc}", "warning")
                            self._drop()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONNECT_S if self.channel is None else PING_S)

    async def _open(self) -> tuple[Channel, dict[str, Any]]:
        """Mutual TLS with the cluster CA (the standby's certificate must name the address dialled), then the
        HMAC handshake inside it."""
        try:
            tls = client_tls(self.cfg)
        except UserError as exc:
            raise ChannelError(str(exc), auth=True) from exc
        peer, timeout = str(self.cfg.peer_ip), self.cfg.ack_timeout_s
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer, self.cfg.db_port, ssl=tls, server_hostname=peer), timeout
            )
        except ssl.SSLError as exc:  # its certificate is not from the cluster CA, or not for this address
            raise ChannelError(f"TLS: the standby's certificate was refused: {exc.reason or exc}", auth=True) from exc
        try:
            return await client_handshake(reader, writer, self.key, self.cfg.node, timeout)
        except ChannelError as exc:
            writer.close()
            if isinstance(exc.__cause__, ssl.SSLError):  # TLS 1.3: the standby's refusal of ours comes on read
                raise ChannelError(f"TLS: the standby refused this head's certificate: {exc}", auth=True) from exc
            raise
        except BaseException:
            writer.close()
            raise

    async def _connect(self) -> None:
        channel, welcome = await self._open()
        own = await asyncio.to_thread(_revision, self.cfg)
        theirs = str(welcome.get("revision", ""))
        if theirs != own:
            channel.close()
            raise ChannelError(
                f"the standby's database is at schema revision {theirs or 'none'}, this head's at {own or 'none'}: "
                "run the same haoscar version on both heads (until then the standby is stale)",
                auth=True,
            )
        async with self._lock:
            self.channel = channel
            same = welcome.get("epoch") == self.epoch and welcome.get("lsn") == self.lsn and self.epoch
            if same and not self.need_copy:
                self.synced = True
            else:
                await self._full_copy(channel)
            self.last_error = None
        self.bus.event("replication.db_synced", f"database in sync with {self.cfg.peer} (epoch {self.epoch})")
        self.on_synced()

    async def _full_copy(self, channel: Channel) -> None:
        """Hold SQLite's write lock (waiting for any writer to finish), copy, ship, and only then let writers on."""
        conn = await asyncio.to_thread(_lock_database, self.cfg)
        try:
            data = await asyncio.to_thread(dblog.snapshot, conn)
            epoch = secrets.token_hex(8)
            count = max(1, -(-len(data) // PART_BYTES))
            for part in range(count):
                chunk = data[part * PART_BYTES : (part + 1) * PART_BYTES]
                last = part == count - 1
                timeout = max(self.cfg.ack_timeout_s, 10.0 + (len(data) / 20e6 if last else 0.0))
                frame = {"op": "snapshot", "epoch": epoch, "part": part, "last": last}
                reply = await channel.request(frame, timeout, blob=chunk)
                if not reply.get("ok"):
                    raise ChannelError(f"standby could not load the full copy: {reply.get('error')}")
            self.epoch, self.lsn = epoch, 0
            self.synced = True
            self.need_copy = False
            self._behind = False
            self.bus.event("replication.full_copy", f"sent a full database copy ({len(data)} bytes) to {self.cfg.peer}")
        except BaseException:
            self._drop()
            raise
        finally:
            await asyncio.to_thread(_unlock, conn)

    async def set_peer_stale(self, stale: bool, reason: str) -> bool:
        """Tell the standby (persisted there) whether its copy is stale; False when it cannot be told now."""
        async with self._lock:
            if self.channel is None:
                return False
            try:
                reply = await self.channel.request({"op": "stale", "stale": stale, "reason": reason}, 5.0)
            except ChannelError:
                self._drop()
                return False
            return bool(reply.get("ok"))

    def status(self) -> dict[str, Any]:
        return {"connected": self.channel is not None, "synced": self.synced, "lsn": self.lsn, "epoch": self.epoch}


def _lock_database(cfg: ReplConfig) -> sqlite3.Connection:
    conn = sqlite3.connect(str(cfg.state_dir / DB_FILE), isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _unlock(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
    conn.close()


async def _parts(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The further lines of a writer's transaction, until (and with) the last one."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("the writer hung up in the middle of a transaction")
        request = json.loads(line)
        yield request
        if request.get("op") != "part":
            return


async def _none() -> AsyncIterator[dict[str, Any]]:
    return
    yield


async def _drain(first: dict[str, Any], more: AsyncIterator[dict[str, Any]]) -> None:
    """Read a transaction's remaining parts that will not be shipped (the writer waits for the reply after them)."""
    if first.get("op") == "part":
        async for _ in more:
            pass


def _revision(cfg: ReplConfig) -> str:
    conn = sqlite3.connect(str(cfg.state_dir / DB_FILE))
    try:
        return dblog.revision(conn)
    finally:
        conn.close()
