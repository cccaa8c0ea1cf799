"""The replication manager as the manager tests set it up (test_manager, test_lost_events_and_names): head1 of the
lab spec as the source, its events recorded; and a database channel that is in sync."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from haoscar.events import Event, EventBus
from haoscar.replication.manager import ReplicationManager
from haoscar.spec import check_text


def source_manager(tmp_path: Path) -> tuple[ReplicationManager, list[Event]]:
    spec, _ = check_text((files("haoscar") / "data" / "lab.yaml").read_text())
    assert spec is not None
    events: list[Event] = []
    bus = EventBus("head1")
    bus.subscribe(events.append)
    made = ReplicationManager(spec, "head1", tmp_path, bus)
    made.role = "source"
    return made, events


class SyncedDb:
    """A database channel to the standby that is in sync (what ``db_source`` must be for a clean full pass to
    clear the standby's stale mark)."""

    synced = True
    lsn = 7
    channel = object()
    last_error = None

    async def set_peer_stale(self, _stale: bool, _reason: str) -> bool:
        return True
