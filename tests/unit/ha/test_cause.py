"""Every decision carries a typed cause: events and benchmarks read it, never the human reason text."""

from __future__ import annotations

from dataclasses import replace

from decide_views import view

from haoscar.ha.cause import Cause, handover_cause
from haoscar.ha.decide import Demote, Go, Promote, decide
from haoscar.ha.peer import PeerView
from haoscar.ha.state import State, StateMachine


def only(actions: list[Go | Promote | Demote]) -> Cause:
    assert len(actions) == 1, actions
    return actions[0].cause


def test_a_silent_peer_is_a_failover() -> None:
    silent = view(peer_last_heard=99.0, peer_state=State.ACTIVE, lease_until=100.5)
    assert only(decide(silent)) == Cause.FAILOVER
    assert Cause.FAILOVER.failover_kind == "failover" and Cause.FAILOVER.peer_was_dead


def test_a_forced_takeover_on_a_stale_copy_is_a_takeover_counted_as_a_failover() -> None:
    forced = view(peer_last_heard=99.0, peer_state=State.ACTIVE, lease_until=100.5, repl_stale=True, repl_forced=True)
    assert only(decide(forced)) == Cause.TAKEOVER
    assert Cause.TAKEOVER.failover_kind == "failover" and Cause.TAKEOVER.peer_was_dead


def test_a_cold_start_of_the_primary_is_a_start() -> None:
    cold = view(is_primary=True, peer_last_heard=99.9, peer_state=State.STANDBY, peer_healthy=True, lease_until=100.5)
    assert only(decide(cold)) == Cause.START
    assert Cause.START.failover_kind == "start" and not Cause.START.peer_was_dead


def test_the_active_demotes_with_the_cause_of_the_request() -> None:
    ready = view(
        state=State.ACTIVE, lease_until=100.5, peer_last_heard=99.9, peer_state=State.STANDBY, peer_healthy=True
    )
    assert only(decide(replace(ready, switchover_requested=True))) == Cause.SWITCHOVER
    assert only(decide(replace(ready, failback_requested=True))) == Cause.FAILBACK
    assert only(decide(replace(ready, resources_escalated=True))) == Cause.RESOURCE_FAILURE
    assert only(decide(replace(ready, lease_until=None))) == Cause.LEASE_LOST
    assert only(decide(replace(ready, shutdown=True))) == Cause.SHUTDOWN


def test_the_standby_takes_a_handover_with_the_cause_its_peer_announced() -> None:
    handed = view(peer_last_heard=99.9, peer_state=State.STANDBY, peer_handover_to_me=True, lease_until=100.7)
    assert only(decide(replace(handed, peer_handover_cause=Cause.FAILBACK))) == Cause.FAILBACK
    assert only(decide(handed)) == Cause.SWITCHOVER
    # every handover is a "switchover" in the failover event's coarse kind, as before causes existed
    assert {c.failover_kind for c in (Cause.SWITCHOVER, Cause.FAILBACK, Cause.RESOURCE_FAILURE)} == {"switchover"}


def test_starting_and_active_keep_the_cause_of_the_takeover() -> None:
    takeover = view(state=State.TAKEOVER, lease_until=100.5, peer_last_heard=99.0, takeover_cause=Cause.FAILOVER)
    go, promote = decide(takeover)
    assert isinstance(go, Go) and go.state == State.STARTING and go.cause == Cause.FAILOVER
    assert isinstance(promote, Promote) and promote.cause == Cause.FAILOVER
    starting = replace(takeover, state=State.STARTING, promote_result="ok")
    assert decide(starting) == [Go(State.ACTIVE, "VIP and services up")]
    assert only(decide(starting)) == Cause.FAILOVER
    assert only(decide(replace(starting, promote_result="RuntimeError: boom"))) == Cause.TAKEOVER_FAILED


def test_the_cause_is_not_read_from_the_reason_text() -> None:
    # same words, other cause: what counts is the typed field
    silent = view(peer_last_heard=99.0, peer_state=State.ACTIVE, lease_until=100.5)
    (action,) = decide(silent)
    assert isinstance(action, Go) and "silent" in action.reason and action.cause == Cause.FAILOVER
    handed = view(peer_last_heard=99.9, peer_state=State.STANDBY, peer_handover_to_me=True, lease_until=100.7)
    (action,) = decide(handed)
    assert isinstance(action, Go) and "silent" not in action.reason and action.cause == Cause.SWITCHOVER


def test_the_state_machine_remembers_the_cause_of_its_latest_transition() -> None:
    seen: list[tuple[State, Cause]] = []

    def on_change(old: State, new: State, why: str) -> None:
        seen.append((new, sm.cause))

    sm = StateMachine(on_change)
    sm.set(State.STANDBY, "started", Cause.DAEMON_START)
    sm.set(State.TAKEOVER, "the peer is silent on every network", Cause.FAILOVER)
    assert seen == [(State.STANDBY, Cause.DAEMON_START), (State.TAKEOVER, Cause.FAILOVER)]


def test_a_peer_announces_its_handover_cause_in_its_heartbeats() -> None:
    peer = PeerView(("private",))
    body = {"inc": 1, "seq": 5, "state": "standby", "handover": "head2", "handover_cause": "failback"}
    peer.heard("private", body, 10.0, my_incarnation=2)
    assert peer.handover_cause == Cause.FAILBACK
    # an older peer announces nothing, and a garbled cause is no cause of ours
    assert handover_cause(None) == Cause.SWITCHOVER
    assert handover_cause("lease-lost") == Cause.SWITCHOVER
