"""The witness lease on both sides, and the role state machine's table."""

from __future__ import annotations

import pytest

from haoscar.ha.lease import LeaseTable, LeaseView
from haoscar.ha.state import IllegalTransition, State, StateMachine


def test_the_witness_grants_one_holder_at_a_time() -> None:
    table = LeaseTable(lease=0.8, started=0.0)
    assert table.request("head1", "acquire", 1.0).granted
    denied = table.request("head2", "acquire", 1.5)
    assert not denied.granted and denied.holder == "head1" and denied.remaining == pytest.approx(0.3)
    assert table.request("head1", "acquire", 1.7).granted  # renewal
    assert not table.request("head2", "acquire", 2.4).granted
    assert table.request("head2", "acquire", 2.5).granted  # head1's lease ran out at 2.5


def test_a_released_lease_is_free_at_once() -> None:
    table = LeaseTable(lease=0.8, started=0.0)
    table.request("head1", "acquire", 1.0)
    table.request("head1", "release", 1.1)
    assert table.request("head2", "acquire", 1.2).granted


def test_a_restarted_witness_grants_nothing_for_one_lease() -> None:
    table = LeaseTable(lease=0.8, started=10.0)
    assert not table.request("head2", "acquire", 10.5).granted
    assert table.request("head2", "acquire", 10.8).granted


def test_a_query_changes_nothing() -> None:
    table = LeaseTable(lease=0.8, started=0.0)
    table.request("head1", "acquire", 1.0)
    answer = table.request("head2", "query", 1.1)
    assert not answer.granted and answer.holder == "head1"
    assert table.request("head1", "acquire", 1.2).granted


def test_the_head_view_ends_before_the_witness_whatever_the_delay() -> None:
    view = LeaseView(lease=0.8, margin=0.08)
    view.sent(1, 100.0)
    # the reply comes 0.3 s later; the witness counted from its receipt, somewhere in (100.0, 100.3)
    assert view.reply(1, True, "head1", 0.8, 100.3)
    assert view.until == pytest.approx(100.72)
    assert view.valid(100.7) and not view.valid(100.72)


def test_a_reply_to_no_request_is_ignored() -> None:
    view = LeaseView(lease=0.8, margin=0.08)
    assert not view.reply(99, True, "head1", 0.8, 1.0)
    assert view.until is None


def test_a_denial_ends_the_view() -> None:
    view = LeaseView(lease=0.8, margin=0.08)
    view.sent(1, 1.0)
    view.reply(1, True, "head1", 0.8, 1.01)
    view.sent(2, 1.2)
    view.reply(2, False, "head2", 0.5, 1.21)
    assert not view.valid(1.3) and view.denials == 1


def test_only_table_transitions_are_allowed() -> None:
    changes: list[tuple[State, State]] = []
    sm = StateMachine(lambda old, new, why: changes.append((old, new)))
    sm.set(State.STANDBY, "start")
    with pytest.raises(IllegalTransition):
        sm.set(State.ACTIVE, "skipping the lease")
    sm.set(State.TAKEOVER, "peer dead")
    assert changes == [(State.INIT, State.STANDBY), (State.STANDBY, State.TAKEOVER)]


def test_a_head_marked_stale_gets_the_lease_only_when_forced() -> None:
    table = LeaseTable(lease=0.8, started=0.0)
    assert table.request("head1", "acquire", 1.0).granted
    # Only the holder may mark its peer; the peer cannot clear its own mark.
    assert table.mark("head2", "head1", stale=True, reason="x", was_holder=False, now=1.1) is None
    assert table.mark("head1", "head2", stale=True, reason="missed txn 7", was_holder=False, now=1.1) is True
    assert table.mark("head2", "head1", stale=False, reason="", was_holder=False, now=1.2) is None
    # head1 dies; its lease runs out, and head2 is still refused, with the reason.
    refused = table.request("head2", "acquire", 2.0)
    assert not refused.granted and refused.holder is None and refused.stale == "missed txn 7"
    forced = table.request("head2", "acquire", 2.1, force=True)
    assert forced.granted and forced.stale is None and "head2" not in table.stale


def test_the_holder_clears_the_mark_once_its_standby_is_in_sync_again() -> None:
    table = LeaseTable(lease=0.8, started=0.0)
    table.request("head1", "acquire", 1.0)
    table.mark("head1", "head2", stale=True, reason="disk full", was_holder=True, now=1.0)
    assert table.mark("head1", "head2", stale=False, reason="", was_holder=True, now=1.5) is False
    # A release that says "in sync" (a switchover) is accepted from the head that held the lease until then.
    table.request("head1", "release", 1.6)
    assert table.request("head2", "acquire", 1.7).granted
