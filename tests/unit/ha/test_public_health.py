"""Public health (link + ping targets) with hysteresis, and the decision it feeds: the active head whose public
side is worse than its standby's hands the role over; the standby's own loss changes no role."""

from __future__ import annotations

from ipaddress import IPv4Address

from decide_views import view

from haoscar.ha.cause import Cause, handover_cause
from haoscar.ha.decide import Demote, View, decide, public_side_lost
from haoscar.ha.public_health import PublicHealth, echo_request, parse_reply
from haoscar.ha.state import State

GW, ROUTER = IPv4Address("198.19.0.1"), IPv4Address("198.19.0.200")


def health() -> PublicHealth:
    return PublicHealth("eth1", (GW, ROUTER), failures=3, interval=0.2)


def test_one_lost_ping_does_nothing_three_in_a_row_lose_the_target() -> None:
    h = health()
    assert (h.score, h.max_score) == (3, 3)
    assert h.record(True, {GW}) is False  # ROUTER missed once
    assert h.record(True, {GW}) is False  # twice
    assert h.score == 3
    assert h.record(True, {GW}) is True  # the third miss in a row: lost
    assert (h.score, h.unreachable) == (2, [ROUTER])
    assert h.record(True, {GW, ROUTER}) is True and h.score == 3  # back at its first answer


def test_an_answer_between_misses_restarts_the_count() -> None:
    h = health()
    for answered in ({GW}, {GW}, {GW, ROUTER}, {GW}, {GW}):
        h.record(True, answered)
    assert h.score == 3


def test_the_link_down_for_three_rounds_is_score_0() -> None:
    h = health()
    h.record(False, set())
    h.record(False, set())
    assert not h.link_lost
    h.record(False, set())
    assert h.link_lost and h.score == 0
    assert h.as_dict()["link"] == "lost"


def test_echo_request_and_reply_parsing() -> None:
    request = echo_request(0x1234, 7)
    assert request[0] == 8 and len(request) > 8
    ip_header = bytes([0x45]) + bytes(11) + GW.packed + bytes(4)
    reply = ip_header + bytes([0, 0]) + request[2:4] + request[4:]
    assert parse_reply(reply, 0x1234) == (GW, 7)
    assert parse_reply(reply, 0x4321) is None


def active(**changes: object) -> View:
    """The primary, active with its lease, beside a healthy standby; both public sides whole."""
    return view(
        **{
            "state": State.ACTIVE,
            "is_primary": True,
            "lease_until": 100.5,
            "peer_last_heard": 99.9,
            "peer_state": State.STANDBY,
            "peer_healthy": True,
            "public_score": 3,
            "public_max": 3,
            "peer_public_score": 3,
            **changes,
        }
    )


def test_an_active_head_whose_public_link_is_lost_hands_over_to_a_standby_that_reaches_it() -> None:
    [action] = decide(active(public_score=0))
    assert isinstance(action, Demote) and action.handover and not action.urgent
    assert action.cause == Cause.PUBLIC_LINK_LOST
    # the peer's takeover carries the same cause; it counts as a failover
    assert handover_cause("public-link-lost") == Cause.PUBLIC_LINK_LOST
    assert Cause.PUBLIC_LINK_LOST.failover_kind == "failover"


def test_a_ping_target_lost_here_but_reached_by_the_standby_moves_the_role() -> None:
    assert public_side_lost(active(public_score=2, peer_public_score=3))
    assert decide(active(public_score=2, peer_public_score=3))[0].cause == Cause.PUBLIC_LINK_LOST


def test_no_move_when_the_standby_does_not_do_better_or_cannot_take_the_role() -> None:
    assert decide(active(public_score=2, peer_public_score=2)) == []  # the target is down for both: stay
    assert decide(active(public_score=0, peer_public_score=None)) == []  # a peer that reports nothing
    assert decide(active(public_score=0, peer_healthy=False)) == []
    assert decide(active(public_score=0, peer_last_heard=99.0)) == []  # the peer is not alive
    assert decide(active(public_score=0, repl_drained=False)) == []  # it would lose changes: wait


def test_the_standbys_own_public_loss_changes_no_role() -> None:
    standby = active(state=State.STANDBY, is_primary=False, public_score=0, peer_state=State.ACTIVE, lease_until=None)
    assert decide(standby) == []
    # and the active head next to it, which reaches everything, keeps the role
    assert decide(active(peer_public_score=0)) == []
