"""``ReplicationManager``: the role-agnostic API the HA daemon drives on role changes.

start_source(peer)  this head is active: ship files and database changes to ``peer``
start_target()      this head is standby: accept them from the active head
catch_up_from(peer) a returning former active head: pull from the new one, keeping what only it had
drain(timeout)      before a switchover: wait until nothing is pending
stop()              on demotion or shutdown
may_take_over(force), status()
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from haoscar.db.constants import DB_FILE
from haoscar.errors import UserError
from haoscar.events import EventBus, Severity
from haoscar.replication.config import ReplConfig, prepare_trees, repl_config
from haoscar.replication.dbsource import DbSource
from haoscar.replication.dbtarget import DbTarget
from haoscar.replication.files import FileReplicator
from haoscar.replication.rsync import RsyncDaemon, pull_argv, run_rsync, write_secrets
from haoscar.replication.state import (
    STATUS_FILE,
    PersistedState,
    ReplicationStatus,
    may_take_over,
    write_json_atomic,
)
from haoscar.spec.models import ClusterSpec

Role = Literal["none", "source", "target"]
# The lag alert's and the status file's pace (the file is rewritten only when it changed, or every 5 s): a second
# is what an administrator reading `haoscar replication status` can tell apart; 4 times a second was ~10 % of an
# idle active head's CPU (docs/benchmarks.md, idle cost). The replication itself does not wait for this loop.
STATUS_EVERY_S = 1.0
# Both heads booting: the standby's rsync daemon and database listener may come up after this head's first sync.
# Within this window after start_source, and until the first full sync, an unreachable standby is retried every
# START_RETRY_S without a failure report: it is marked stale ("not yet synced") already, so waiting loses nothing.
START_WINDOW_S = 20.0
START_RETRY_S = 0.3


@dataclass
class CatchUpReport:
    peer: str
    divergent_dir: Path
    divergent_files: list[str] = field(default_factory=list)
    database_copy: Path | None = None
    seconds: float = 0.0
    ready: bool = False
    error: str | None = None


class ReplicationManager:
    def __init__(
        self,
        spec: ClusterSpec,
        node_name: str,
        state_dir: Path,
        bus: EventBus,
        key_file: Path | None = None,
    ) -> None:
        self.cfg: ReplConfig = repl_config(spec, node_name, Path(state_dir), key_file)
        self.bus = bus
        self.role: Role = "none"
        self.persisted = PersistedState.load(self.cfg.repl_dir)
        self.rsyncd = RsyncDaemon(self.cfg)
        self.files: FileReplicator | None = None
        self.db_source: DbSource | None = None
        self.db_target: DbTarget | None = None
        self.last_error: str | None = None
        self._last_problem = "ok"
        self._lag_alerted = False
        self._monitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The HA daemon's "the witness has recorded that the standby is stale" (None: no daemon, e.g. the
        # replication-only daemon); asked once per stale episode, before the first change the standby lacks is
        # acknowledged.
        self._confirm_stale: Callable[[bool], Awaitable[bool]] | None = None
        self._witness_knows = False
        # As the source: the standby was told its copy is current, after the witness dropped its mark. As the
        # target: the active head said so in this run. Either way a takeover by the standby would be granted now.
        self.confirmed_current = False
        self._announcing: asyncio.Task[None] | None = None
        self._started = 0.0
        self._synced_once = False

    # -- roles --------------------------------------------------------------------------------------------------
    async def start_source(self, peer: str | None = None) -> None:
        if peer is not None and peer != self.cfg.peer:
            raise UserError(f"{peer!r} is not this head's peer; the spec pairs {self.cfg.node} with {self.cfg.peer}")
        await self.stop()
        prepare_trees(self.cfg)
        key = self.cfg.key()
        self.role = "source"
        self._witness_knows = False
        self.confirmed_current, self._synced_once, self._started = False, False, time.monotonic()
        # Until the first full sync, nothing says what the standby has.
        self._set_stale(True, f"{self.cfg.node} became active; {self.cfg.peer} not yet synced from it", tell=False)
        # The database exists at the current schema before its first full copy (a no-op when it already does).
        await asyncio.to_thread(_ensure_database, self.cfg.state_dir)
        await self.rsyncd.start(key, writable=False)  # read-only: a returning peer pulls from here
        self.db_source = DbSource(self.cfg, key, self.bus, self._db_degraded, self._standby_stale_recorded)
        self.db_source.on_synced = self._db_synced
        await self.db_source.start()
        self.files = FileReplicator(self.cfg, self._file_result, self._handles_unwatched)
        await self.files.start()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="repl-monitor")
        self.bus.event("replication.source", f"replicating to {self.cfg.peer} ({self.cfg.peer_ip})")

    async def start_target(self) -> None:
        await self.stop()
        prepare_trees(self.cfg)
        key = self.cfg.key()
        self.role = "target"
        self.confirmed_current = False
        self.persisted.role = "target"
        self.persisted.save(self.cfg.repl_dir)
        await self.rsyncd.start(key, writable=True)
        self.db_target = DbTarget(self.cfg, key, self.bus, self._told_stale)
        await self.db_target.start()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="repl-monitor")
        self.bus.event("replication.target", f"accepting replication from {self.cfg.peer} ({self.cfg.peer_ip})")

    def refresh_keys(self) -> None:
        """After a key rotation step (the HA daemon's reload): new rsync runs and database connections use the
        current replication key; a connection already authenticated goes on."""
        key = self.cfg.key()
        if self.role != "none":
            write_secrets(self.cfg, key)
        for channel in (self.db_source, self.db_target):
            if channel is not None:
                channel.key = key

    async def stop(self) -> None:
        self.confirmed_current = False
        if self._announcing is not None:
            self._announcing.cancel()
            self._announcing = None
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if self.files is not None:
            await self.files.stop()
            self.files = None
        if self.db_source is not None:
            await self.db_source.stop()
            self.db_source = None
        if self.db_target is not None:
            await self.db_target.stop()
            self.db_target = None
        await self.rsyncd.stop()
        if self.role != "none":
            self.role = "none"
            self._write_status()

    # -- switchover and return ----------------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Wait until every file change and database transaction is on the standby; False at the timeout."""
        if self.role != "source" or self.files is None or self.db_source is None:
            return self.role == "target"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.files._wake.set()
            if self.files.drained() and self.db_source.synced and not self.persisted.standby_stale:
                # Twice, a batch window apart: a close that raced the first look is caught by the second.
                await asyncio.sleep(self.cfg.batch_s + 0.05)
                if self.files.drained() and self.db_source.synced:
                    return True
            await asyncio.sleep(0.05)
        return False

    def drained_now(self) -> bool:
        """As the source, at this instant: no file change pending or in flight, the database in sync and the
        standby not stale (``drain`` waits for this; a failback checks it without waiting)."""
        if self.role != "source" or self.files is None or self.db_source is None:
            return self.role == "target"
        return self.files.drained() and self.db_source.synced and not self.persisted.standby_stale

    async def catch_up_from(self, peer: str, timeout: float = 120.0) -> CatchUpReport:
        """Become a standby of ``peer`` again after having been active: first keep, under
        ``replication/divergent/<UTC time>/``, this head's database and every file the pull replaces or deletes,
        then pull, then accept replication and wait until the peer confirms a full sync."""
        if peer != self.cfg.peer:
            raise UserError(f"{peer!r} is not this head's peer; the spec pairs {self.cfg.node} with {self.cfg.peer}")
        started = time.monotonic()
        await self.stop()
        prepare_trees(self.cfg)
        key = self.cfg.key()
        write_secrets(self.cfg, key)
        self._set_stale(True, f"catching up from {peer}", tell=False)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        keep = self.cfg.repl_dir / "divergent" / stamp
        report = CatchUpReport(peer=peer, divergent_dir=keep)
        report.database_copy = await asyncio.to_thread(_copy_database, self.cfg.state_dir / DB_FILE, keep / "db")
        for tree in self.cfg.trees:
            backup = keep / "files" / str(tree.path).lstrip("/")
            result = await run_rsync(pull_argv(self.cfg, tree, backup))
            while result.problem == "unreachable" and time.monotonic() - started < timeout:
                # A head that just booted may be up before its peer's rsync daemon (or the link) is.
                await asyncio.sleep(1.0)
                result = await run_rsync(pull_argv(self.cfg, tree, backup))
            if not result.ok:
                report.error = f"pull of {tree.path} from {peer} failed ({result.problem}): {result.summary()}"
                self.bus.event("replication.catch_up_failed", report.error, "critical")
                report.seconds = time.monotonic() - started
                return report
            if backup.exists():
                report.divergent_files += sorted(
                    str(p.relative_to(backup.parent.parent)) for p in backup.rglob("*") if not p.is_dir()
                )
        if report.divergent_files:
            self.bus.event(
                "replication.divergent", f"kept {len(report.divergent_files)} files only this head had under {keep}",
                "warning", files=report.divergent_files[:50],
            )  # fmt: skip
        await self.start_target()
        deadline = time.monotonic() + timeout
        while self.persisted.standby_stale and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        report.ready = not self.persisted.standby_stale
        report.seconds = time.monotonic() - started
        self.bus.event("replication.caught_up" if report.ready else "replication.catch_up_slow",
                       f"caught up from {peer} in {report.seconds:.1f} s" if report.ready
                       else f"{peer} has not confirmed a full sync within {timeout:g} s",
                       "info" if report.ready else "warning")  # fmt: skip
        return report

    def may_take_over(self, force: bool = False) -> tuple[bool, str]:
        if self.role == "source":
            return True, "this head is already active"
        allowed, why = may_take_over(self.persisted, force)
        if force and self.persisted.standby_stale:
            self.bus.event("replication.forced_takeover", why, "critical")
        return allowed, why

    # -- status -------------------------------------------------------------------------------------------------
    def status(self) -> ReplicationStatus:
        lag, files, size = self.files.stats() if self.files is not None else (0.0, 0, 0)
        lsn, connected = 0, False
        if self.db_source is not None:
            lsn, connected = self.db_source.lsn, self.db_source.channel is not None
        elif self.db_target is not None:
            lsn, connected = self.db_target.lsn, self.db_target.connected
        last_full = self.files.last_full_pass if self.files is not None else self.persisted.last_full_pass
        return ReplicationStatus(
            node=self.cfg.node, role=self.role, peer=self.cfg.peer, lag_s=round(lag, 3), files_pending=files,
            bytes_pending=size, last_full_pass=last_full,
            last_error=self.last_error or (self.db_source.last_error if self.db_source else None),
            standby_stale=self.persisted.standby_stale, stale_reason=self.persisted.stale_reason,
            db_lsn=lsn, db_connected=connected, confirmed_current=self.confirmed_current,
            files_shipped=self.files.files_shipped if self.files else 0,
            bytes_shipped=self.files.bytes_shipped if self.files else 0,
            **(self.files.handle_status() if self.files else {}),
        )  # fmt: skip

    def _write_status(self, current: ReplicationStatus | None = None) -> None:
        status = (current or self.status()).to_dict()
        same = {**status, "updated": None}
        last = getattr(self, "_status_written", (0.0, None))
        if same == last[1] and time.monotonic() - last[0] < 5.0:
            return  # unchanged and written less than 5 s ago (an idle pair): not rewritten at every round
        try:
            write_json_atomic(self.cfg.repl_dir / STATUS_FILE, status, fsync=False)
            self._status_written: tuple[float, dict[str, Any] | None] = (time.monotonic(), same)
        except OSError as exc:
            self.bus.log_error(f"replication status not written: {exc}")

    async def _monitor_loop(self) -> None:
        while True:
            status = self.status()
            if self.role == "source":
                if status.lag_s > self.cfg.lag_alert_s and not self._lag_alerted:
                    self._lag_alerted = True
                    self.bus.event(
                        "replication.lag", f"{status.lag_s:.1f} s behind ({status.files_pending} files pending)",
                        "warning", lag_s=status.lag_s, files_pending=status.files_pending,
                    )  # fmt: skip
                elif self._lag_alerted and status.lag_s < self.cfg.lag_alert_s / 2:
                    self._lag_alerted = False
                    self.bus.event("replication.lag_ok", f"lag back to {status.lag_s:.2f} s")
            self._write_status(status)
            await asyncio.sleep(STATUS_EVERY_S)

    # -- the witness's part ---------------------------------------------------------------------------------------
    def set_stale_confirmer(self, confirm: Callable[[bool], Awaitable[bool]]) -> None:
        self._confirm_stale = confirm

    def mark_own_copy_stale(self, reason: str) -> None:
        """On a standby: someone other than the active head (the witness) says this head's copy is stale."""
        self._set_stale(True, reason, tell=False)

    async def _standby_stale_recorded(self, why: str) -> bool:
        """May a change the standby lacks be acknowledged? Only once the standby is marked stale here (persisted)
        and the witness knows it."""
        if not self.persisted.standby_stale:
            self._set_stale(True, f"{self.cfg.peer} missed a database change: {why}", tell=False)
        if self._confirm_stale is None or self._witness_knows:
            return True
        self._witness_knows = await self._confirm_stale(True)
        if not self._witness_knows:
            self.bus.event(
                "replication.unacknowledged",
                f"a change was refused: {self.cfg.peer} did not acknowledge it and the witness could not record "
                f"that {self.cfg.peer} is stale (this head is cut from both)",
                "critical",
            )
        return self._witness_knows

    # -- what the parts report ----------------------------------------------------------------------------------
    def _set_stale(self, stale: bool, reason: str, tell: bool = True) -> None:
        changed = stale != self.persisted.standby_stale
        if changed or not stale:
            self._witness_knows = False  # a new episode: the witness must hear of it before changes go on alone
        if stale:
            self.confirmed_current = False
        self.persisted.standby_stale = stale
        self.persisted.stale_reason = reason if stale else ""
        self.persisted.stale_since = (self.persisted.stale_since if not changed else time.time()) if stale else None
        self.persisted.role = self.role
        self.persisted.save(self.cfg.repl_dir)
        if changed:
            if stale:
                self.bus.event("replication.stale", f"{self._whose()} data is stale: {reason}", "critical")
            else:
                self.bus.event("replication.in_sync", f"{self._whose()} data is in sync again")
        if tell and self.db_source is not None:
            if stale:
                self._spawn(self.db_source.set_peer_stale(True, reason))
            elif self._announcing is None or self._announcing.done():
                self._announcing = asyncio.ensure_future(self._announce_current())

    async def _announce_current(self) -> None:
        """Tell the standby its copy is current only once the witness no longer marks it (it hears the clear on the
        next renewal): a standby that reports itself current can take over at once. Before, it was told first and
        a crash within that renewal found the witness still refusing it the lease."""
        while self.role == "source" and not self.persisted.standby_stale:
            if self._confirm_stale is None or await self._confirm_stale(False):
                break
            await asyncio.sleep(0.2)  # not confirmed within a lease: asked again while this head is the source
        if self.role != "source" or self.persisted.standby_stale or self.db_source is None:
            return
        if await self.db_source.set_peer_stale(False, "") and not self.persisted.standby_stale:
            self.confirmed_current = True

    def _whose(self) -> str:
        return f"standby {self.cfg.peer}'s" if self.role == "source" else f"this head's ({self.cfg.node})"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _file_result(self, problem: str, message: str, full: bool) -> None:
        if problem == "unreachable" and self._starting() and self.files is not None:
            asyncio.get_running_loop().call_later(START_RETRY_S, self.files.request_full_pass)
            return
        if problem != "ok":
            self.last_error = message
            if problem != self._last_problem:
                severity: Severity = "critical" if problem in ("auth", "disk_full") else "warning"
                self.bus.event("replication.failed", message, severity, problem=problem)
            self._last_problem = problem
            self._set_stale(True, message)
            return
        if self._last_problem != "ok":
            self._last_problem = "ok"
            self.last_error = None
            if self.files is not None and not full:
                self.files.request_full_pass()  # recovered: confirm with a full pass before calling it in sync
        if full:
            self.persisted.last_full_pass = time.time()
            if self.db_source is not None and self.db_source.synced:
                self._synced_once = True
                self._set_stale(False, "")

    def _handles_unwatched(self, message: str) -> None:
        # Loud: the lag bound no longer holds for files written over NFS (docs/replication.md, "Files").
        self.bus.event("replication.handles_unwatched", message, "critical")

    def _starting(self) -> bool:
        """As the source, before the first full sync and within the start window (``START_WINDOW_S``)."""
        return self.role == "source" and not self._synced_once and time.monotonic() - self._started < START_WINDOW_S

    def _db_degraded(self, reason: str, auth: bool) -> None:
        self.last_error = reason
        problem = "auth" if auth else "db"
        self.bus.event("replication.failed", reason, "critical" if auth else "warning", problem=problem)
        self._set_stale(True, reason, tell=False)

    def _db_synced(self) -> None:
        # The database is in sync: confirm the files with a full pass; that pass clears the stale mark.
        if self.files is not None:
            self.files.request_full_pass()

    def _told_stale(self, stale: bool, reason: str) -> None:
        self._set_stale(stale, reason or f"told by {self.cfg.peer}", tell=False)
        self.confirmed_current = not stale


def _ensure_database(state_dir: Path) -> None:
    """In a child process, as ``dbtarget._ensure_schema``: the daemon never keeps SQLAlchemy and Alembic (~17 MB)."""
    import subprocess
    import sys

    code = (
        "import sys; from haoscar.db.session import open_database; "
        "from haoscar.replication.dbhook import attach_if_replicating; "
        "open_database(sys.argv[1], on_open=(attach_if_replicating,)).close()"
    )
    done = subprocess.run([sys.executable, "-c", code, str(state_dir)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not bring this head's database to the current schema: {last}")


def _copy_database(path: Path, into: Path) -> Path | None:
    """A consistent copy of this head's database before it is replaced by the peer's (never discard silently)."""
    if not path.exists():
        return None
    into.mkdir(parents=True, exist_ok=True)
    target = into / DB_FILE
    source = sqlite3.connect(str(path))
    dest = sqlite3.connect(str(target))
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    return target
