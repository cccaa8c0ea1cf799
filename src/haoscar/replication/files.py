"""The active head's file replication: inotify batches shipped with rsync, plus periodic full passes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchdog.observers.api import BaseObserver

from haoscar.replication.changes import ChangeSet, walk_link_groups
from haoscar.replication.config import ReplConfig, Tree
from haoscar.replication.fanwatch import HandleWatch, HandleWatchUnavailable
from haoscar.replication.rsync import RsyncResult, batch_argv, full_argv, run_rsync
from haoscar.replication.watcher import listen_for_lost_events, start_observer

MAX_BACKOFF_S = 5.0
RECENT_KEEP = 200_000


@dataclass
class TreeState:
    tree: Tree
    changes: ChangeSet
    inflight_since: float | None = None
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_KEEP))


class FileReplicator:
    """``on_result(problem, message)`` is called after every rsync run: problem is ``ok`` or what failed;
    ``on_notice(message)`` when writes through NFS file handles cannot be watched (only full passes find them)."""

    def __init__(
        self,
        cfg: ReplConfig,
        on_result: Callable[[str, str, bool], None],
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_result = on_result
        self.on_notice = on_notice
        self.handle_watch: HandleWatch | None = None
        self.handle_watch_problem: str | None = None  # why exported trees are not watched by fanotify
        self.trees = [TreeState(t, ChangeSet(t.path, t.excludes)) for t in cfg.trees]
        self.observer: BaseObserver | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._full_now = asyncio.Event()
        self.last_full_pass: float | None = None
        self.full_pass_ok = False
        self.files_shipped = 0
        self.bytes_shipped = 0
        self.failing = False
        # Events were lost (inotify overflow, watch limit): not in sync until a full pass that began afterwards.
        self.lost = False
        self.lost_count = 0
        self._forget_lost: Callable[[], None] = lambda: None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for state in self.trees:
            state.changes.wakeup = lambda: self._wake_from_thread(loop)
        self._forget_lost = listen_for_lost_events(lambda why: self._lost_from_thread(loop, why))
        # Watch first, then copy everything: a change made during the first full pass is caught either way.
        self.observer = await asyncio.to_thread(start_observer, [s.changes for s in self.trees])
        await asyncio.to_thread(self._watch_handles, loop)
        for state in self.trees:
            groups = await asyncio.to_thread(walk_link_groups, state.tree.path, state.changes.excludes)
            state.changes.note_link_names(groups)
        self.tasks = [
            asyncio.create_task(self._batch_loop(), name="repl-files-batch"),
            asyncio.create_task(self._full_loop(), name="repl-files-full"),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        self._forget_lost()
        if self.handle_watch is not None:
            watch, self.handle_watch = self.handle_watch, None
            await asyncio.to_thread(watch.stop)
        if self.observer is not None:
            observer, self.observer = self.observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)

    def _watch_handles(self, loop: asyncio.AbstractEventLoop) -> None:
        """fanotify for the exported trees: NFS writes through handles that inotify misses (replication/fanwatch)."""
        exported = [s.changes for s in self.trees if s.tree.handles]
        if not exported:
            return
        watch = HandleWatch(exported, lambda why: self._lost_from_thread(loop, why))
        try:
            watch.start()
        except HandleWatchUnavailable as exc:
            names = ", ".join(str(c.root) for c in exported)
            self.handle_watch_problem = (
                f"writes made over NFS to {names} may reach the standby only at the next full pass "
                f"(every {self.cfg.full_pass_s:g} s): {exc}"
            )
            if self.on_notice is not None:
                self.on_notice(self.handle_watch_problem)
            return
        self.handle_watch = watch

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the observer thread was stopping
            loop.call_soon_threadsafe(self._wake.set)

    def request_full_pass(self) -> None:
        self._full_now.set()

    def _lost_from_thread(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.events_lost, why)

    def events_lost(self, why: str) -> None:
        """Changes may have gone unseen: the standby is not in sync until a full pass started after this one
        completes (``on_result`` marks it stale now; the pass clears it)."""
        self.lost = True
        self.lost_count += 1
        self.on_result("lost", f"file change events were lost ({why}); a full pass follows", False)
        self._full_now.set()

    # -- incremental --------------------------------------------------------------------------------------------
    async def _batch_loop(self) -> None:
        backoff = 0.0
        while True:
            # Idle (nothing pending, no backoff): every new change sets _wake (ChangeSet.note -> wakeup), so no
            # timed poll; with changes held back (a file still being written) it looks again every 0.25 s.
            held = backoff or any(len(s.changes) for s in self.trees)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.25 if held else None)
            self._wake.clear()
            if backoff:
                await asyncio.sleep(backoff)
            elif any(len(s.changes) for s in self.trees):
                # Let a burst (an untar, a cp -a) gather into one rsync run.
                await asyncio.sleep(self.cfg.batch_s)
            ok = True
            for state in self.trees:
                ok = await self._ship(state) and ok
            backoff = 0.0 if ok else min(MAX_BACKOFF_S, max(0.5, backoff * 2))

    async def _ship(self, state: TreeState) -> bool:
        batch = state.changes.take(self.cfg.open_write_quiet_s)
        if not batch:
            return True
        state.inflight_since = batch.oldest
        try:
            argv = batch_argv(self.cfg, state.tree, state.changes.writing())
            result = await run_rsync(argv, batch.files_from())
        finally:
            state.inflight_since = None
        if not result.ok:
            state.changes.requeue(batch)
            self._report(result, state.tree)
            return False
        now = time.monotonic()
        for rel in (*batch.paths, *batch.deletes):
            state.recent.append((now, rel))
        state.changes.changed_since_ship(batch)
        self.files_shipped += len(batch.paths) + len(batch.deletes)
        self.bytes_shipped += batch.size
        self._report(result, state.tree)
        return True

    def _report(self, result: RsyncResult, tree: Tree) -> None:
        problem = result.problem
        self.failing = problem != "ok"
        message = "ok"
        if problem != "ok":
            message = f"rsync of {tree.path} to the standby failed ({problem}): {result.summary()}"
        self.on_result(problem, message, False)

    # -- full passes --------------------------------------------------------------------------------------------
    async def _full_loop(self) -> None:
        while True:
            ok = await self.full_pass()
            self._full_now.clear()
            if ok and self.lost:
                continue  # events were lost while that pass ran, so it does not count: another one at once
            wait = self.cfg.full_pass_s if ok else 2.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full_now.wait(), wait)

    async def full_pass(self) -> bool:
        lost_before = self.lost_count
        for state in self.trees:
            started = time.monotonic()
            result = await run_rsync(full_argv(self.cfg, state.tree, state.changes.writing()))
            if not result.ok:
                self.full_pass_ok = False
                self._report(result, state.tree)
                return False
            # A file shipped by a batch while the full pass ran may have been judged by the pass's older listing
            # (and deleted on the standby): ship those again.
            for when, rel in list(state.recent):
                if when >= started:
                    state.changes.note("file", state.tree.path / rel)
        self.last_full_pass = time.time()
        self.full_pass_ok = True
        if self.lost_count != lost_before:
            # Events were lost while this pass ran: it may have listed a tree before the lost change.
            self.on_result("ok", "full pass complete, but events were lost meanwhile", False)
            return True
        self.lost = False
        self.on_result("ok", "full pass complete", True)
        return True

    # -- status -------------------------------------------------------------------------------------------------
    def handle_status(self) -> dict[str, Any]:
        """``handle_watch`` and ``handle_writes`` of the replication status (state.ReplicationStatus)."""
        if self.handle_watch is not None:
            return {"handle_watch": "fanotify", "handle_writes": self.handle_watch.resolved}
        return {"handle_watch": self.handle_watch_problem or "", "handle_writes": 0}

    def stats(self) -> tuple[float, int, int]:
        """(lag seconds, paths pending, bytes pending): lag is the age of the oldest change not yet on the peer."""
        now = time.monotonic()
        oldest: float | None = None
        files = size = 0
        for state in self.trees:
            count, nbytes, first = state.changes.stats()
            files += count
            size += nbytes
            for when in (first, state.inflight_since):
                if when is not None and (oldest is None or when < oldest):
                    oldest = when
        return (now - oldest if oldest is not None else 0.0), files, size

    def drained(self) -> bool:
        idle = all(len(s.changes) == 0 and s.inflight_since is None for s in self.trees)
        return idle and not self.failing and not self.lost
