"""Incarnations come from a persisted boot counter: a head restarted with its clock set back is not a replay."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from haoscar.events import EventBus
from haoscar.ha.config import node_config
from haoscar.ha.daemon import Daemon
from haoscar.ha.incarnation import next_incarnation
from haoscar.ha.keyset import KeySet
from haoscar.ha.transport import Packets
from haoscar.ha.wire import KIND_HEARTBEAT, encode
from haoscar.spec import check_text

LAB = (files("haoscar") / "data" / "lab.yaml").read_text()

HOUR_NS = 3600 * 10**9


def daemon(state_dir: Path) -> Daemon:
    """head2's daemon object as ``haoscar ha run`` builds it (nothing started: no sockets, no VIP)."""
    spec, problems = check_text(LAB)
    assert spec is not None and not problems
    resources: Any = type("NoResources", (), {"on_escalate": None})()
    vip: Any = object()
    cfg = node_config(spec, "head2")
    return Daemon(cfg, key=b"k" * 32, state_dir=state_dir, bus=EventBus("head2"), resources=resources, vip=vip)


def test_the_counter_grows_by_one_per_start_whatever_the_clock(tmp_path: Path) -> None:
    first = next_incarnation(tmp_path, wall_ns=lambda: 5 * HOUR_NS)
    second = next_incarnation(tmp_path, wall_ns=lambda: 1 * HOUR_NS)  # the clock went back four hours
    assert (first, second) == (5 * HOUR_NS, 5 * HOUR_NS + 1)
    assert json.loads((tmp_path / "incarnation").read_text()) == {"incarnation": second}
    assert (tmp_path / "incarnation").stat().st_mode & 0o777 == 0o600


def test_a_daemon_restarted_with_the_clock_set_back_is_accepted_by_its_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = Packets(KeySet.of_secret(b"k" * 32), EventBus("head1"), incarnation=1)

    def heartbeat(inc: int, seq: int) -> bytes:
        return encode(KIND_HEARTBEAT, {"node": "head2", "inc": inc, "seq": seq}, b"k" * 32)

    now = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now)
    first_life = daemon(tmp_path)
    for seq in range(1, 50):
        assert peer.accept(heartbeat(first_life.incarnation, seq), KIND_HEARTBEAT, ("head2",)) is not None
    monkeypatch.setattr(time, "time_ns", lambda: now - HOUR_NS)  # restarted with the clock an hour behind
    second_life = daemon(tmp_path)
    assert second_life.incarnation > first_life.incarnation
    assert peer.accept(heartbeat(second_life.incarnation, 1), KIND_HEARTBEAT, ("head2",)) is not None
    assert peer.replay.incarnation("head2") == second_life.incarnation
    # and the first life's packets are now replays
    assert peer.accept(heartbeat(first_life.incarnation, 50), KIND_HEARTBEAT, ("head2",)) is None
    assert peer.drops.counts["replay"] == 1
