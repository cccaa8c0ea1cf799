"""The pure decision step, scenario by scenario."""

from __future__ import annotations

from dataclasses import replace

from decide_views import view

from haoscar.ha.cause import Cause
from haoscar.ha.decide import Demote, Go, Promote, decide, lease_probe, wants_failback
from haoscar.ha.state import State


def test_a_standby_that_hears_an_active_peer_stays() -> None:
    assert decide(view(peer_last_heard=99.9, peer_state=State.ACTIVE, peer_healthy=True)) == []


def test_a_standby_goes_for_the_role_when_the_peer_is_silent_for_dead_time() -> None:
    heard = view(peer_last_heard=99.5, peer_state=State.ACTIVE)
    assert decide(heard) == [] and lease_probe(heard) is None
    silent = view(peer_last_heard=99.39, peer_state=State.ACTIVE)
    # it asks the witness while it stays standby; only a granted lease is a role change
    assert lease_probe(silent) == "the peer is silent on every network"
    assert decide(silent) == []
    assert decide(replace(silent, lease_until=100.5)) == [Go(State.TAKEOVER, "the peer is silent on every network")]


def test_a_denied_probe_never_leaves_standby_and_a_partition_heal_ends_it() -> None:
    for now in (100.0, 101.0, 103.0, 110.0):  # the witness keeps denying: the peer renews its lease
        silent = view(now=now, peer_last_heard=99.39, peer_state=State.ACTIVE, lease_until=None)
        assert decide(silent) == [] and lease_probe(silent) is not None
    healed = view(now=110.0, peer_last_heard=109.9, peer_state=State.ACTIVE)
    assert lease_probe(healed) is None
    assert lease_probe(view(witness_configured=False, peer_last_heard=99.0)) is None  # no witness: fencing


def test_takeover_needs_the_lease_and_fences_when_configured() -> None:
    assert decide(view(state=State.TAKEOVER, state_since=99.9)) == []
    actions = decide(view(state=State.TAKEOVER, lease_until=100.5))
    assert isinstance(actions[0], Go) and actions[0].state == State.STARTING
    assert actions[1] == Promote("holds the witness lease", fence=True, handover=False)


def test_takeover_gives_up_when_the_peer_comes_back_active() -> None:
    actions = decide(view(state=State.TAKEOVER, lease_until=100.5, peer_last_heard=99.99, peer_state=State.ACTIVE))
    assert actions == [Go(State.STANDBY, "the peer is active")]


def test_without_witness_takeover_is_only_through_fencing() -> None:
    no_witness = view(state=State.TAKEOVER, witness_configured=False, fencing_configured=False, state_since=99.0)
    assert decide(no_witness) == []
    fenced = decide(replace(no_witness, fencing_configured=True))
    assert fenced[1] == Promote("peer dead", fence=True, handover=False)
    # a cold start hears the peer as standby: nobody to fence, a healthy spare is kept
    cold = replace(no_witness, fencing_configured=True, peer_last_heard=99.9, peer_state=State.STANDBY)
    assert decide(cold)[1] == Promote("cold start", fence=False, handover=False)


def test_an_active_head_without_lease_demotes_urgently_unless_the_peer_confirms_it() -> None:
    active = view(state=State.ACTIVE, lease_until=99.9)
    assert decide(active) == [
        Demote("lease expired and the peer does not confirm this head", urgent=True, handover=False)
    ]
    assert decide(replace(active, peer_guard_until=100.2)) == []  # witness down: only a warning


def test_cold_start_the_primary_goes_first_and_the_standby_waits() -> None:
    both = {"peer_last_heard": 99.9, "peer_state": State.STANDBY, "peer_healthy": True, "started": 99.0}
    primary = view(is_primary=True, **both)
    assert lease_probe(primary) == "nobody is active and this is the preferred primary"
    assert decide(replace(primary, lease_until=100.7)) == [Go(State.TAKEOVER, lease_probe(primary) or "")]
    assert decide(view(is_primary=False, state_since=99.0, **both)) == []


def test_startup_waits_for_the_peer_before_declaring_it_dead() -> None:
    assert decide(view(started=99.7, lease_until=100.7)) == []
    assert decide(view(started=99.3, lease_until=100.7))[0] == Go(State.TAKEOVER, "the peer is silent on every network")


def test_switchover_hands_over_only_to_a_healthy_standby() -> None:
    active = view(state=State.ACTIVE, lease_until=100.5, switchover_requested=True, peer_last_heard=99.9)
    assert decide(replace(active, peer_state=State.STANDBY, peer_healthy=False)) == []
    actions = decide(replace(active, peer_state=State.STANDBY, peer_healthy=True))
    assert actions == [Demote("switchover requested", urgent=False, handover=True)]


def test_the_standby_takes_a_handover_at_once() -> None:
    handed = view(peer_last_heard=99.9, peer_state=State.STANDBY, peer_handover_to_me=True)
    assert lease_probe(handed) == "the peer handed the role over"
    actions = decide(replace(handed, lease_until=100.7))
    assert actions == [Go(State.TAKEOVER, "the peer handed the role over")]
    promote = decide(
        view(
            state=State.TAKEOVER,
            lease_until=100.7,
            peer_last_heard=99.9,
            peer_state=State.STANDBY,
            peer_handover_to_me=True,
        )
    )
    assert promote[1] == Promote("holds the witness lease", fence=False, handover=True)


def test_a_head_handing_over_does_not_take_the_role_back() -> None:
    v = view(is_primary=True, peer_last_heard=99.9, peer_state=State.STANDBY, handing_over_until=101.0)
    assert decide(v) == []


def test_a_head_handing_over_takes_the_role_when_the_new_active_head_falls_silent() -> None:
    # head1 handed over 1 s ago (its promise runs until 102.0 s); head2 took the role and crashed 0.7 s ago: silent
    # on every network for longer than the dead time (0.6 s), it is not taking anything - no 3 s wait for the promise
    crashed = view(is_primary=True, peer_last_heard=99.3, peer_state=State.ACTIVE, handing_over_until=102.0)
    assert lease_probe(crashed) == "the peer is silent on every network"
    assert decide(replace(crashed, lease_until=100.3))[0] == Go(State.TAKEOVER, "the peer is silent on every network")
    # heard 0.1 s ago and not active yet (a primary would otherwise take the role from a standby peer): it holds
    assert lease_probe(replace(crashed, peer_last_heard=99.9, peer_state=State.STANDBY)) is None
    assert lease_probe(replace(crashed, peer_last_heard=99.9, peer_state=State.STANDBY, handing_over_until=None))


def test_an_escalated_service_fails_over() -> None:
    v = view(state=State.ACTIVE, lease_until=100.5, resources_escalated=True, peer_last_heard=99.9, peer_healthy=True)
    assert decide(v) == [Demote("a service failed too often", urgent=False, handover=True)]


def test_auto_failback_waits_for_a_stable_period() -> None:
    v = view(is_primary=True, failback_auto=True, peer_last_heard=99.9, peer_state=State.ACTIVE, peer_all_links=True)
    assert not wants_failback(replace(v, stable_since=95.0))
    assert wants_failback(replace(v, stable_since=90.0))
    assert not wants_failback(replace(v, stable_since=90.0, failback_auto=False))


def test_the_active_standby_head_fails_back_when_the_primary_asks() -> None:
    v = view(
        state=State.ACTIVE,
        lease_until=100.5,
        peer_last_heard=99.9,
        peer_state=State.STANDBY,
        peer_healthy=True,
        peer_wants_failback=True,
    )
    assert decide(v) == [Demote("failback to the primary", urgent=False, handover=True)]


def test_shutdown_demotes_and_stops() -> None:
    v = view(state=State.ACTIVE, lease_until=100.5, shutdown=True)
    assert decide(v) == [Demote("shutting down", urgent=False, handover=False, final=State.STOPPED)]
    assert decide(view(shutdown=True)) == [Go(State.STOPPED, "shutting down")]


def test_a_failback_right_after_a_switchover_is_taken_at_once() -> None:
    # head1 handed over 1 s ago (its promise runs 3 s) and head2 now hands the role back: no gap without an active
    back = view(
        is_primary=True,
        handing_over_until=102.0,
        peer_last_heard=99.9,
        peer_state=State.STANDBY,
        peer_handover_to_me=True,
    )
    assert lease_probe(back) == "the peer handed the role over"
    # no handover back, head2 heard and not (yet) active: the promise holds, the primary does not take the role
    assert lease_probe(replace(back, peer_handover_to_me=False)) is None


def test_a_standby_that_heard_nobody_waits_initdead_and_the_primary_only_dead_time() -> None:
    alone = {"started": 95.0, "lease_until": 100.7, "initdead": 10.0}
    # 5 s after its start and nobody heard: the standby still waits (a slow primary may be starting)
    assert decide(view(**alone)) == []
    assert lease_probe(view(**alone)) is None
    # ... and goes once the initial dead time is over
    assert decide(view(**{**alone, "started": 89.0}))[0] == Go(State.TAKEOVER, "the peer is silent on every network")
    # the preferred primary with a witness goes after one dead time: the lease keeps it safe
    assert lease_probe(view(is_primary=True, **alone)) == "the peer is silent on every network"
    # a standby that hears the (slow) primary, not yet active, defers to it for the whole initial dead time
    heard = {**alone, "peer_last_heard": 99.9, "peer_state": State.STANDBY, "peer_healthy": True, "state_since": 95.0}
    assert lease_probe(view(**heard)) is None
    late = lease_probe(view(**{**heard, "state_since": 88.0}))
    assert late == "nobody is active and the primary did not take the role"


def test_a_peer_heard_after_the_start_and_then_silent_is_dead_after_dead_time_alone() -> None:
    # up for 1 s only (less than startup_wait and initdead): the peer was heard, then silent for dead_time
    crashed = view(started=99.0, startup_wait=2.0, initdead=10.0, peer_last_heard=99.35, lease_until=100.7)
    assert decide(crashed)[0] == Go(State.TAKEOVER, "the peer is silent on every network")


def test_only_a_failover_with_the_lease_held_probes_short() -> None:
    # the peer was declared dead (silent for the dead time), the takeover runs for that cause, the lease is held
    failover = view(
        state=State.TAKEOVER,
        lease_until=100.5,
        peer_last_heard=99.3,
        peer_state=State.ACTIVE,
        takeover_cause=Cause.FAILOVER,
    )
    actions = decide(failover)
    assert actions[0] == Go(State.STARTING, "holds the witness lease")
    assert actions[1] == Promote("holds the witness lease", fence=True, handover=False, short_probe=True)
    # a forced takeover on a stale copy is a failover too: the peer is dead
    assert decide(replace(failover, takeover_cause=Cause.TAKEOVER))[1].short_probe is True  # type: ignore[union-attr]
    # no lease: no promotion at all, so no probe of any length
    assert decide(replace(failover, lease_until=99.9, state_since=99.9)) == []


def test_a_handover_a_cold_start_or_no_witness_probes_the_full_time() -> None:
    handover = view(
        state=State.TAKEOVER,
        lease_until=100.5,
        peer_last_heard=99.9,
        peer_state=State.STANDBY,
        peer_handover_to_me=True,
        takeover_cause=Cause.SWITCHOVER,
    )
    assert decide(handover)[1] == Promote("holds the witness lease", fence=False, handover=True, short_probe=False)
    # cold start: the primary heard nobody, the lease is granted, the cause is a start
    cold = view(state=State.TAKEOVER, lease_until=100.5, is_primary=True, takeover_cause=Cause.START)
    assert decide(cold)[1] == Promote("holds the witness lease", fence=True, handover=False, short_probe=False)
    # the peer is heard again (alive) although the takeover began as a failover: the full probe
    back = view(
        state=State.TAKEOVER,
        lease_until=100.5,
        peer_last_heard=99.95,
        peer_state=State.STANDBY,
        takeover_cause=Cause.FAILOVER,
    )
    assert decide(back)[1] == Promote("holds the witness lease", fence=True, handover=False, short_probe=False)
    # without a witness nothing proves the old owner's entitlement ended: a fence, and the full probe
    fenced = view(state=State.TAKEOVER, witness_configured=False, peer_last_heard=99.0, takeover_cause=Cause.FAILOVER)
    assert decide(fenced)[1] == Promote("peer dead", fence=True, handover=False, short_probe=False)
