"""The HA timeline (commands/timeline.py) on event lines recorded from real HA daemons in a lab.

``data/ha_events/crash_switchover_head{1,2}.jsonl`` are the two heads' ``STATE_DIR/ha/events.jsonl`` after
tests/lab/test_ha_replication.py's first two tests: head1 cold-starts active; head1 crashes and head2 fails over;
head1 returns, catches up, and a switchover gives it the role back; then head1 crashes again while head2's copy is
stale: head2 refuses to take over (replication.refused) until ``haoscar ha takeover --force``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from haoscar.commands.env import Env
from haoscar.commands.timeline import TimelineRequest, pair_events, read_events, timeline
from haoscar.errors import FieldError
from haoscar.events import Event, JsonlStore, events_path

DATA = Path(__file__).parent / "data" / "ha_events"


def recorded(*heads: str) -> list[Event]:
    events: list[Event] = []
    for head in heads:
        events += JsonlStore(DATA / f"crash_switchover_{head}.jsonl").read()
    return sorted(events, key=lambda e: e.wall)


def test_a_crash_failover_is_paired_with_its_measured_times() -> None:
    failovers, _ = pair_events(recorded("head2"))
    crash = failovers[-1]  # the oldest on head2: head1 crashed, head2 took the role
    assert (crash.node, crash.kind, crash.cause) == ("head2", "failover", "failover")
    assert crash.took_ms == 854.0 and crash.since_dead_ms == 253.0
    assert crash.reason == "the peer is silent on every network"
    # the takeover began at the role event, the role was ours at the failover event: 49 ms apart in this record
    assert 0.04 < crash.active_wall - crash.began_wall < 0.06
    assert list(crash.steps_ms) == [
        "last_heard",
        "dead_declared",
        "takeover",
        "probe_done",
        "vip_added",
        "garp_sent",
        "services_up",
    ]
    assert crash.steps_ms["last_heard"] == 0.0 and crash.steps_ms["dead_declared"] == 600.9
    assert crash.steps_ms["services_up"] == 853.2


def test_a_switchover_is_a_switchover_and_has_no_dead_peer_time() -> None:
    failovers, _ = pair_events(recorded("head1", "head2"))
    kinds = [(f.node, f.kind, f.cause, f.took_ms) for f in failovers]
    assert kinds == [  # newest first
        ("head2", "failover", "takeover", 3403.0),
        ("head1", "switchover", "switchover", 68.0),
        ("head2", "failover", "failover", 854.0),
        ("head1", "start", "start", 74.0),
    ]
    switch = failovers[1]
    assert switch.since_dead_ms is None and switch.reason == "the peer handed the role over"


def test_a_refused_takeover_stands_until_the_forced_takeover() -> None:
    failovers, refusals = pair_events(recorded("head1", "head2"))
    assert [(r.node, r.kind) for r in refusals] == [("head2", "replication.refused")]
    refused = refusals[0]
    assert "replicated data is stale" in refused.message and "haoscar ha takeover --force" in refused.message
    forced = failovers[0]
    assert refused.cleared_wall == forced.active_wall and refused.wall < forced.began_wall
    # the forced takeover waited for the administrator: its measured time spans the refusal
    assert forced.took_ms > (forced.active_wall - refused.wall) * 1000


def test_last_failover_skips_the_cold_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    events_path(state).parent.mkdir(parents=True)
    lines = (DATA / "crash_switchover_head1.jsonl").read_text().splitlines()
    first_life = [line for line in lines if json.loads(line)["wall"] < 1796331540]  # before head1's crash
    events_path(state).write_text("\n".join(first_life) + "\n")
    tl = timeline(Env(state), TimelineRequest())
    assert [f.kind for f in tl.failovers] == ["start"] and tl.last_failover is None
    shutil.copy(DATA / "crash_switchover_head1.jsonl", events_path(state))
    tl = timeline(Env(state), TimelineRequest(limit=3))
    assert tl.last_failover is not None and tl.last_failover.kind == "switchover"
    assert len(tl.events) == 3 and tl.events[0].wall >= tl.events[1].wall >= tl.events[2].wall  # newest first
    assert tl.as_dict()["last_failover"]["took_ms"] == 68.0


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = events_path(state)
    path.parent.mkdir(parents=True)
    lines = (DATA / "crash_switchover_head2.jsonl").read_text().splitlines()
    Path(f"{path}.1").write_text("\n".join(lines[:10]) + "\n")
    path.write_text("\n".join(lines[10:]) + "\n{torn line from a crash\n")
    source, events = read_events(Env(state))
    assert source == str(path) and len(events) == len(lines)
    assert [e.wall for e in events] == sorted(e.wall for e in events)


def _event(kind: str, wall: float, node: str = "head2", **data: object) -> Event:
    return Event(kind, node, f"{kind} message", "warning", dict(data), wall, wall)


def test_a_lease_denial_is_a_refusal_cleared_by_its_ok_event_and_a_coalesced_repeat_is_the_same_one() -> None:
    events = [
        _event("lease.denied", 10.0),
        _event("lease.denied", 70.0),  # the coalescer's summary of the same standing warning
        _event("lease.denied.ok", 80.0),
        _event("role", 90.0, old="standby", new="takeover", cause="failover"),
        _event("role", 91.0, old="takeover", new="standby", cause="not-entitled"),
    ]
    failovers, refusals = pair_events(events)
    assert failovers == []
    assert [(r.kind, r.wall, r.cleared_wall) for r in refusals] == [
        ("takeover.aborted", 90.0, None),
        ("lease.denied", 10.0, 80.0),
    ]


def test_a_limit_out_of_range_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(FieldError) as caught:
        timeline(Env(tmp_path), TimelineRequest(limit=0))
    assert caught.value.field == "limit" and "between 1 and 2000" in caught.value.detail


def test_no_event_store_is_an_empty_timeline(tmp_path: Path) -> None:
    tl = timeline(Env(tmp_path), TimelineRequest())
    assert tl.events == [] and tl.failovers == [] and tl.refusals == [] and tl.last_failover is None


def test_only_the_newest_part_of_a_large_store_is_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = events_path(state)
    path.parent.mkdir(parents=True)
    lines = (DATA / "crash_switchover_head2.jsonl").read_text().splitlines()
    Path(f"{path}.1").write_text("\n".join(lines[:20]) + "\n")
    path.write_text("\n".join(lines[20:]) + "\n")
    budget = sum(len(line) + 1 for line in lines[-5:]) + 10  # the last 5 lines and a part of the 6th
    _, events = read_events(Env(state), budget=budget)
    assert [e.to_json() for e in events] == [Event.from_dict(json.loads(line)).to_json() for line in lines[-5:]]
