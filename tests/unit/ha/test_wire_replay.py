"""Heartbeat packets: authenticated, versioned, and judged for replays."""

from __future__ import annotations

import pytest

from haoscar.ha.replay import ReplayWindow
from haoscar.ha.wire import KIND_HEARTBEAT, Rejected, decode, encode

KEY = b"k" * 32


def _packet(seq: int = 1, inc: int = 7) -> bytes:
    return encode(KIND_HEARTBEAT, {"node": "head1", "inc": inc, "seq": seq, "state": "active"}, KEY)


def test_round_trip_keeps_the_body() -> None:
    packet = decode(_packet(5), KEY)
    assert (packet.kind, packet.sender, packet.seq, packet.body["state"]) == (KIND_HEARTBEAT, "head1", 5, "active")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_packet()[:5], "truncated"),
        (_packet()[:-1], "truncated"),
        (_packet() + b"x", "garbage"),
        (b"GET / HTTP/1.1\r\n\r\n", "garbage"),
        (b"\x00" * 64, "garbage"),
    ],
)
def test_malformed_packets_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        decode(data, KEY)
    assert info.value.reason == reason


def test_a_packet_signed_with_another_key_is_a_forgery() -> None:
    with pytest.raises(Rejected) as info:
        decode(encode(KIND_HEARTBEAT, {"node": "head1", "inc": 1, "seq": 1}, b"x" * 32), KEY)
    assert info.value.reason == "bad_mac"


def test_a_flipped_body_byte_breaks_the_mac() -> None:
    data = bytearray(_packet())
    data[12] ^= 0x01
    with pytest.raises(Rejected) as info:
        decode(bytes(data), KEY)
    assert info.value.reason == "bad_mac"


def test_replay_window_accepts_each_sequence_number_once() -> None:
    window = ReplayWindow(size=64)
    assert window.accept("head1", 10, 1)
    assert window.accept("head1", 10, 3)
    assert window.accept("head1", 10, 2)  # late but new: fine
    assert not window.accept("head1", 10, 3)  # the same packet again
    assert window.accept("head1", 10, 200)
    assert not window.accept("head1", 10, 100)  # too old to judge: refused


def test_replay_window_refuses_packets_of_an_earlier_life() -> None:
    window = ReplayWindow()
    assert window.accept("head1", 10, 50)
    assert window.accept("head1", 11, 1)  # the daemon restarted
    assert not window.accept("head1", 10, 51)  # a recorded packet of the previous life
    assert window.accept("head2", 5, 1)  # senders are independent
