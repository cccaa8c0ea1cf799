"""The active head's word on its standby's copy: "current" reaches the standby only after the witness dropped its
mark (so a standby that reports a current copy is never refused the lease), and a standby whose listeners are not
up yet when both heads boot is retried quietly within the start window (docs/ha-safety.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from manager_fakes import SyncedDb, source_manager

from haoscar.replication.manager import START_RETRY_S, START_WINDOW_S


class RecordingDb(SyncedDb):
    def __init__(self) -> None:
        self.told: list[bool] = []

    async def set_peer_stale(self, stale: bool, _reason: str) -> bool:
        self.told.append(stale)
        return True


class Files:
    def __init__(self) -> None:
        self.full_passes = 0

    def request_full_pass(self) -> None:
        self.full_passes += 1


def test_the_standby_hears_that_its_copy_is_current_only_once_the_witness_dropped_its_mark(tmp_path: Path) -> None:
    manager, _ = source_manager(tmp_path)
    db = RecordingDb()
    manager.db_source = db  # type: ignore[assignment]
    manager.persisted.standby_stale = True
    witness_cleared = asyncio.Event()
    asked: list[bool] = []

    async def confirm(stale: bool) -> bool:
        asked.append(stale)
        await witness_cleared.wait()
        return True

    manager.set_stale_confirmer(confirm)

    async def scenario() -> None:
        manager._file_result("ok", "full pass complete", True)
        await asyncio.sleep(0.05)
        # The word the lease renewals carry is "not stale" at once; the standby is not told before the witness.
        assert not manager.persisted.standby_stale
        assert asked == [False] and db.told == [] and not manager.status().confirmed_current
        witness_cleared.set()
        await asyncio.sleep(0.05)
        assert db.told == [False] and manager.status().confirmed_current

    asyncio.run(scenario())


def test_a_new_stale_episode_while_the_witness_is_asked_means_the_standby_is_never_told_current(
    tmp_path: Path,
) -> None:
    manager, _ = source_manager(tmp_path)
    db = RecordingDb()
    manager.db_source = db  # type: ignore[assignment]
    manager.persisted.standby_stale = True
    witness_cleared = asyncio.Event()

    async def confirm(stale: bool) -> bool:
        await witness_cleared.wait()
        return True

    manager.set_stale_confirmer(confirm)

    async def scenario() -> None:
        manager._file_result("ok", "full pass complete", True)
        await asyncio.sleep(0.05)
        manager._db_degraded("the standby did not acknowledge a change", auth=False)  # stale again
        witness_cleared.set()
        await asyncio.sleep(0.05)
        assert False not in db.told and not manager.status().confirmed_current and manager.persisted.standby_stale

    asyncio.run(scenario())


def test_an_unreachable_standby_is_retried_quietly_only_within_the_start_window(tmp_path: Path) -> None:
    manager, events = source_manager(tmp_path)
    files = Files()
    manager.files = files  # type: ignore[assignment]
    manager._started = time.monotonic()
    unreachable = "rsync of /home to the standby failed (unreachable): tlspipe: cannot connect"

    async def booting() -> None:
        manager._file_result("unreachable", unreachable, False)
        await asyncio.sleep(START_RETRY_S + 0.2)

    asyncio.run(booting())
    assert files.full_passes == 1  # asked again soon, not after the usual 2 s
    assert [e.kind for e in events if e.kind == "replication.failed"] == [] and manager.last_error is None

    manager._started = time.monotonic() - START_WINDOW_S - 1  # the window is over: a failure as before
    manager._file_result("unreachable", unreachable, False)
    assert [e.kind for e in events if e.kind == "replication.failed"] == ["replication.failed"]
    assert manager.persisted.standby_stale and manager.last_error == unreachable
