"""A flood of rejected connections costs bounded disk, fsyncs and alerts (issue 10, finding 6).

The attacker is anybody who can open a connection or send a packet: each rejection is an event. 100,000 of them
must leave a few summary lines, rotated files of bounded size, and at most a handful of alerts, while a real
critical event in the middle of the flood is still stored (and fsync'd) and alerted.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from haoscar.events import Coalescer, Event, EventBus, JsonlStore
from haoscar.ha.alert_delivery import KindLimit
from haoscar.ha.alerts import AlertDispatcher, Route


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A hook that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Event] = []

    def describe(self) -> str:
        return "recorder"

    def send(self, event: Event) -> None:
        self.sent.append(event)


def stored(path: Path) -> list[dict[str, object]]:
    files = sorted(path.parent.glob(path.name + "*"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_a_flood_of_rejected_connections_is_coalesced_and_alerted_a_bounded_number_of_times(tmp_path: Path) -> None:
    clock = FakeClock()
    bus = EventBus("head1", error_stream=io.StringIO(), coalescer=Coalescer(window=60.0, clock=clock))
    store_path = tmp_path / "ha" / "events.jsonl"
    bus.add_sink("store", JsonlStore(store_path))
    hook = Recorder()
    dispatcher = AlertDispatcher(
        [Route(hook, "warning")],  # type: ignore[arg-type]  # any object with describe/send is a hook
        log=bus.log_error,
        limit=KindLimit(per_window=5, window=300.0, clock=clock),
    )
    bus.add_sink("alerts", dispatcher)
    seen: list[Event] = []
    bus.subscribe(seen.append)

    for n in range(100_000):
        if n % 1000 == 0:
            clock.now += 1.0  # 100 s of flood: two coalescing windows end during it
        bus.event("api.rejected", f"connection from 198.18.0.{n % 200} refused", "warning", address="public")
        if n == 50_000:
            bus.event("role", "standby -> active: the primary is silent", "critical")
    bus.close()

    assert len(seen) == 100_001  # subscribers still see every event, in memory
    lines = stored(store_path)
    rejected = [e for e in lines if e["kind"] == "api.rejected"]
    summaries = [e for e in rejected if "coalesced" in e["data"]]  # type: ignore[operator]
    assert len(rejected) <= 5
    assert rejected[0]["message"] == "connection from 198.18.0.0 refused"
    assert summaries and summaries[0]["message"].startswith("59")  # type: ignore[union-attr]
    assert "more api.rejected from public in the last 60s" in str(summaries[0]["message"])
    assert sum(int(e["data"]["coalesced"]) for e in summaries) == 99_999  # type: ignore[index]
    assert [e["kind"] for e in lines if e["severity"] == "critical"] == ["role"]
    assert store_path.stat().st_size < 4096

    kinds = [e.kind for e in hook.sent]
    assert kinds.count("api.rejected") <= 5
    assert "role" in kinds
    assert dispatcher.limit.suppressed == 0  # the coalescing alone kept the alerts under the bound here


def test_spoofed_sources_share_one_line_after_the_first_few(tmp_path: Path) -> None:
    clock = FakeClock()
    bus = EventBus("head1", error_stream=io.StringIO(), coalescer=Coalescer(window=60.0, max_sources=4, clock=clock))
    store_path = tmp_path / "events.jsonl"
    bus.add_sink("store", JsonlStore(store_path))
    for n in range(10_000):
        bus.event("replication.rejected", "connection refused", "warning", address=f"198.18.{n // 256}.{n % 256}")
    bus.close()
    lines = stored(store_path)
    assert len(lines) <= 2 * 5  # four sources told apart, the rest as "*", each one line and one summary
    assert any(e["data"].get("source") == "*" for e in lines)  # type: ignore[union-attr]
    firsts = [e for e in lines if "coalesced" not in e["data"]]  # type: ignore[operator]
    assert len(firsts) == 5


def test_the_store_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    store = JsonlStore(path, max_bytes=64 * 1024, files=3)
    for n in range(5_000):  # every event distinct: nothing to coalesce, only rotation bounds the disk
        store(Event(f"kind{n}", "head1", "x" * 100, "info", {"n": n}))
    store.idle()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 64 * 1024 for p in tmp_path.iterdir())
    events = store.read()
    assert events[-1].data == {"n": 4999}
    assert [e.data["n"] for e in events] == list(range(events[0].data["n"], 5000))  # oldest first, no gap
    assert [e.data["n"] for e in store.read(3)] == [4997, 4998, 4999]


def test_critical_events_are_fsynced_one_by_one_others_once_per_burst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    store = JsonlStore(tmp_path / "events.jsonl")
    for n in range(1000):
        store(Event("link.down", "head1", f"n={n}", "warning"))
    assert fsyncs == []  # written (readers see it) but not yet synced
    store.idle()
    assert len(fsyncs) == 1
    store(Event("fence", "head1", "fenced head2", "critical"))
    assert len(fsyncs) == 2
    store.idle()
    assert len(fsyncs) == 2  # nothing left to sync
    assert len(store.read()) == 1001


def test_the_alert_limit_bounds_alerts_of_one_kind_per_window() -> None:
    clock = FakeClock()
    hook = Recorder()
    log: list[str] = []
    dispatcher = AlertDispatcher(
        [Route(hook, "warning")],  # type: ignore[arg-type]
        log=log.append,
        limit=KindLimit(per_window=5, window=300.0, clock=clock),
    )
    for n in range(1000):
        dispatcher(Event(f"resource.failed{n % 2}", "head1", "dhcp down", "critical"))
    dispatcher(Event("heartbeat", "head1", "info events reach no route and count nothing", "info"))
    assert [e.kind for e in hook.sent].count("resource.failed0") == 5
    assert [e.kind for e in hook.sent].count("resource.failed1") == 5
    assert dispatcher.limit.suppressed == 990
    assert len(log) == 2 and "more than 5 resource.failed0 in 300 s" in log[0]
    clock.now += 300.0
    dispatcher(Event("resource.failed0", "head1", "dhcp down again", "critical"))
    assert hook.sent[-1].message == "dhcp down again"  # a new window sends again
