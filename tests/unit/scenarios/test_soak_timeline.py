"""The soak's timeline: what led to a count, in seconds after the stress began, from both heads' events."""

from __future__ import annotations

from haoscar.scenarios.bench.soak import count_events


def event(node: str, kind: str, mono: float, message: str = "", **data: object) -> dict[str, object]:
    return {"node": node, "kind": kind, "mono": mono, "message": message, "data": data}


def test_the_timeline_tells_what_led_to_a_false_failover() -> None:
    events = [
        event("head1", "role", 9.0, "init -> standby: started", new="standby"),  # before the stress: not listed
        event("head1", "loop.lag", 12.25, "event loop woke 320 ms late", lag_ms=320.0),
        event("head2", "peer", 12.5, "head1 is silent on every network"),
        event("head1", "role", 12.5, "active -> stopping: lease expired", new="stopping", cause="lease-lost"),
        event("head1", "resource.started", 13.0, "dhcp started"),  # not a kind the timeline lists
        event("head2", "peer.ok", 13.0, "peer recovered"),
    ]
    counted = count_events(events, 10.0, 20.0)
    assert counted["timeline"] == [
        "   2.250 head1: loop.lag event loop woke 320 ms late",
        "   2.500 head2: peer head1 is silent on every network",
        "   2.500 head1: role active -> stopping: lease expired",
        "   3.000 head2: peer.ok peer recovered",
    ]
