"""The event bus: what the log, the store and subscribers see, and that emit never blocks or raises."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from haoscar.events import Event, EventBus, JsonlStore, events_path, format_log_line
from haoscar.ha.alerts import daemon_bus
from haoscar.spec.models import HA


def test_events_reach_the_log_the_store_and_subscribers(tmp_path: Path) -> None:
    log = io.StringIO()
    bus = daemon_bus(HA(), "head1", tmp_path, log_stream=log)
    seen: list[str] = []
    bus.subscribe(lambda event: seen.append(event.kind))
    bus.event("role", "standby -> active: the primary is silent on every network", "warning", took_ms=412)
    bus.event("resource.started", "dhcp", service="dhcp")
    assert bus.flush(5)
    bus.close()

    assert seen == ["role", "resource.started"]
    lines = log.getvalue().splitlines()
    assert lines[0] == (
        "<4>haoscar-ha[head1]: role standby -> active: the primary is silent on every network took_ms=412"
    )
    assert lines[1] == "<6>haoscar-ha[head1]: resource.started dhcp service=dhcp"
    stored = [json.loads(line) for line in events_path(tmp_path).read_text().splitlines()]
    assert [(e["kind"], e["severity"], e["node"]) for e in stored] == [
        ("role", "warning", "head1"),
        ("resource.started", "info", "head1"),
    ]
    assert stored[0]["data"] == {"took_ms": 412}
    assert abs(stored[0]["wall"] - time.time()) < 60
    assert [e.kind for e in bus.recent(1)] == ["resource.started"]


def test_the_store_keeps_events_across_buses_and_skips_a_torn_line(tmp_path: Path) -> None:
    for n in range(2):
        bus = daemon_bus(HA(), "head2", tmp_path, log_stream=io.StringIO())
        bus.event("state", f"run {n}")
        bus.close()
    path = events_path(tmp_path)
    with path.open("a") as handle:
        handle.write('{"kind": "role", "node": "he')  # a crash in the middle of a write
    events = JsonlStore(path).read()
    assert [e.message for e in events] == ["run 0", "run 1"]
    assert [e.message for e in JsonlStore(path).read(1)] == ["run 1"]


def test_emit_never_blocks_on_a_slow_sink_and_never_raises(tmp_path: Path) -> None:
    errors = io.StringIO()
    bus = EventBus("head1", error_stream=errors)
    delivered: list[str] = []
    release = threading.Event()

    def slow(event: Event) -> None:
        # Held until the test lets it go: an emit that waited for this sink would not return before the release
        # (30 s later at the earliest), and the delivery would already be recorded when the emits return.
        release.wait(30)
        delivered.append(event.kind)

    def broken(event: Event) -> None:
        raise RuntimeError("disk full")

    def bad_subscriber(event: Event) -> None:
        raise ValueError("oops")

    bus.add_sink("slow", slow)
    bus.add_sink("broken", broken)
    bus.subscribe(bad_subscriber)
    for n in range(3):
        bus.emit(Event("tick", "head1", f"n={n}"))
    assert delivered == []  # the three emits returned while the slow sink still held its first delivery
    release.set()
    assert bus.flush(10)
    assert delivered == ["tick", "tick", "tick"]
    assert "event sink broken failed on tick: disk full" in errors.getvalue()
    assert "event subscriber failed on tick: oops" in errors.getvalue()
    assert bus.sink_errors == 6
    bus.close()


def test_log_lines_are_one_line_with_quoted_values() -> None:
    event = Event("fence", "head2", "fenced head1\nby lab", "critical", {"agent": "lab crash", "ok": True})
    assert format_log_line(event) == '<2>haoscar-ha[head2]: fence fenced head1 by lab agent="lab crash" ok=true'


def test_recent_returns_the_last_n(tmp_path: Path) -> None:
    bus = EventBus("head1", keep=3)
    for n in range(5):
        bus.event("tick", str(n))
    assert [e.message for e in bus.recent(2)] == ["3", "4"]
    assert [e.message for e in bus.recent(10)] == ["2", "3", "4"]
    assert bus.recent(0) == []
