"""The daemon's events carry the typed cause of each role change (no sockets: the decisions are applied directly)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from haoscar.events import Event, EventBus
from haoscar.ha.cause import Cause
from haoscar.ha.config import node_config
from haoscar.ha.daemon import Daemon
from haoscar.ha.decide import Go
from haoscar.ha.state import State
from haoscar.spec import check_text

LAB = (files("haoscar") / "data" / "lab.yaml").read_text()


class FakeVip:
    address: Any = None

    def add(self) -> None: ...
    def bring_up(self, step: Callable[[str], None] = lambda _step: None) -> None: ...
    def remove(self) -> bool:
        return False

    def present(self) -> bool:
        return False

    def announce(self, count: int = 3, gap: float = 0.02) -> None: ...
    async def probe(self, timeout: float) -> str | None:
        return None

    def close(self) -> None: ...


class FakeResources:
    on_escalate: Callable[[str], None]

    async def start(self) -> None: ...
    async def stop(self) -> bool:
        return True

    def start_monitoring(self) -> None: ...
    async def stop_monitoring(self) -> None: ...
    def snapshot(self) -> list[Any]:
        return []


def daemon(tmp_path: Path, events: list[Event]) -> Daemon:
    spec, problems = check_text(LAB)
    assert spec is not None and not problems
    bus = EventBus("head2")
    bus.subscribe(events.append)
    cfg = node_config(spec, "head2")
    return Daemon(cfg, key=b"k" * 32, state_dir=tmp_path, bus=bus, resources=FakeResources(), vip=FakeVip())


def become_active(d: Daemon, go: Go) -> None:
    d.sm.set(State.STANDBY, "started", Cause.DAEMON_START)
    d._apply(go, 100.0)
    d.sm.set(State.STARTING, "holds the witness lease", go.cause)
    d.sm.set(State.ACTIVE, "VIP and services up", go.cause)


def test_a_failover_event_and_last_failover_carry_the_cause(tmp_path: Path) -> None:
    events: list[Event] = []
    d = daemon(tmp_path, events)
    become_active(d, Go(State.TAKEOVER, "the peer is silent on every network", Cause.FAILOVER))
    roles = [(e.data["new"], e.data["cause"]) for e in events if e.kind == "role"]
    assert roles == [("standby", "daemon-start"), ("takeover", "failover"), ("starting", "failover"),
                     ("active", "failover")]  # fmt: skip
    (failover,) = [e for e in events if e.kind == "failover"]
    assert (failover.data["kind"], failover.data["cause"]) == ("failover", "failover")
    assert failover.data["since_dead_s"] is not None
    last = d.status()["last_failover"]
    assert (last["kind"], last["cause"]) == ("failover", "failover")


def test_a_reworded_reason_changes_neither_kind_nor_cause(tmp_path: Path) -> None:
    events: list[Event] = []
    d = daemon(tmp_path, events)
    # the old daemon searched the reason for "silent": a handover worded that way is still a failback
    become_active(d, Go(State.TAKEOVER, "silent words, but the peer handed the role back", Cause.FAILBACK))
    (failover,) = [e for e in events if e.kind == "failover"]
    assert (failover.data["kind"], failover.data["cause"]) == ("switchover", "failback")
    assert failover.data["since_dead_s"] is None
