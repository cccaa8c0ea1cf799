"""The manager's bookkeeping: failures mark the standby stale (persisted, with events), a confirmed full sync
clears it, and lag past the threshold raises one event."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path
from typing import Any

from haoscar.events import Event, EventBus
from haoscar.replication.manager import ReplicationManager
from haoscar.replication.state import PersistedState, read_status
from haoscar.spec import check_text


def manager(tmp_path: Path) -> tuple[ReplicationManager, list[Event]]:
    spec, _ = check_text((files("haoscar") / "data" / "lab.yaml").read_text())
    assert spec is not None
    events: list[Event] = []
    bus = EventBus("head1")
    bus.subscribe(events.append)
    made = ReplicationManager(spec, "head1", tmp_path, bus)
    made.role = "source"
    return made, events


class SyncedDb:
    synced = True
    lsn = 7
    channel = object()
    last_error = None

    async def set_peer_stale(self, _stale: bool, _reason: str) -> bool:
        return True


def test_a_failed_copy_marks_the_standby_stale_until_a_full_sync(tmp_path: Path) -> None:
    made, events = manager(tmp_path)

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

    async def stop(self) -> None:
        return None


def test_lag_past_the_threshold_raises_one_event_and_shows_in_status(tmp_path: Path) -> None:
    made, events = manager(tmp_path)
    lagging = LaggingFiles()
    made.files = lagging  # type: ignore[assignment]

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(made._monitor_loop())
        await asyncio.sleep(0.6)
        current = read_status(tmp_path / "replication")
        lagging.lag = 0.1
        await asyncio.sleep(0.4)
        task.cancel()
        assert current is not None
        return current.to_dict()

    status = asyncio.run(scenario())
    assert status["lag_s"] == 12.0 and status["files_pending"] == 40 and status["bytes_pending"] == 4_000_000
    assert [e.kind for e in events if e.kind.startswith("replication.lag")] == ["replication.lag", "replication.lag_ok"]
