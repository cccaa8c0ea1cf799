"""The manager's bookkeeping: failures mark the standby stale (persisted, with events), a confirmed full sync
clears it, and lag past the threshold raises one event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from manager_fakes import SyncedDb, source_manager

import haoscar.replication.manager as manager_module
from haoscar.replication.state import PersistedState, read_status


def test_a_failed_copy_marks_the_standby_stale_until_a_full_sync(tmp_path: Path) -> None:
    made, events = source_manager(tmp_path)

    async def scenario() -> None:
        made._file_result("disk_full", "rsync of /home failed (disk_full): No space left on device", False)
        assert PersistedState.load(tmp_path / "replication").standby_stale
        made._file_result("disk_full", "again", False)  # the same problem is reported once
        made._file_result("ok", "full pass complete", True)  # files fine, but the database is not in sync
        assert PersistedState.load(tmp_path / "replication").standby_stale
        made.db_source = SyncedDb()  # type: ignore[assignment]
        made._file_result("ok", "full pass complete", True)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert not PersistedState.load(tmp_path / "replication").standby_stale
    kinds = [(e.kind, e.severity) for e in events]
    assert kinds.count(("replication.failed", "critical")) == 1
    assert ("replication.stale", "critical") in kinds and ("replication.in_sync", "info") in kinds


class LaggingFiles:
    last_full_pass = None
    files_shipped = bytes_shipped = 0

    def __init__(self) -> None:
        self.lag = 12.0

    def stats(self) -> tuple[float, int, int]:
        return self.lag, 40, 4_000_000

    def handle_status(self) -> dict[str, object]:
        return {}

    async def stop(self) -> None:
        return None


def test_lag_past_the_threshold_raises_one_event_and_shows_in_status(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(manager_module, "STATUS_EVERY_S", 0.25)  # the monitor's round (1 s shipped), shortened
    made, events = source_manager(tmp_path)
    lagging = LaggingFiles()
    made.files = lagging  # type: ignore[assignment]

    def seen(kind: str) -> bool:
        return any(e.kind == kind for e in events)

    async def scenario() -> dict[str, Any]:
        # The monitor runs every 0.25 s: wait for what it does (the event, then the status it writes in the same
        # round), not for a fixed time that a busy machine may stretch past the round.
        task = asyncio.create_task(made._monitor_loop())
        await _until(lambda: seen("replication.lag"))
        current = read_status(tmp_path / "replication")
        lagging.lag = 0.1
        await _until(lambda: seen("replication.lag_ok"))
        await asyncio.sleep(0.6)  # two more rounds at the low lag: no further event
        task.cancel()
        assert current is not None
        return current.to_dict()

    status = asyncio.run(scenario())
    assert status["lag_s"] == 12.0 and status["files_pending"] == 40 and status["bytes_pending"] == 4_000_000
    assert [e.kind for e in events if e.kind.startswith("replication.lag")] == ["replication.lag", "replication.lag_ok"]


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
