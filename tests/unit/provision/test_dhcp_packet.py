"""The DHCP packet parser on real packet bytes, and on truncated and garbage ones."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest

from haoscar.provision.dhcp_packet import BadPacket, NotDhcp, build_frame, build_request, parse_bootp, parse_frame

MAC = "52:54:00:12:34:56"


def test_discover_from_a_uefi_ipxe_client() -> None:
    payload = build_request(MAC, 1, xid=0xDEADBEEF, client_arch=7, user_class=b"iPXE", hostname="node07")
    request = parse_frame(build_frame(payload, MAC))
    assert request.mac == MAC and request.message_type == "DISCOVER"
    assert request.client_arch == "efi-x64" and request.user_class == "iPXE"
    assert request.hostname == "node07" and request.xid == 0xDEADBEEF


def test_request_from_bios_pxe_with_rfc3004_user_class() -> None:
    payload = build_request(MAC, 3, client_arch=0, user_class=b"\x04iPXE\x03foo")
    request = parse_bootp(payload)
    assert (request.message_type, request.client_arch, request.user_class) == ("REQUEST", "bios", "iPXE,foo")


def test_busybox_udhcpc_discover_bytes() -> None:
    # A DISCOVER as busybox udhcpc sends it: client id (61), max size (57), parameter list (55), vendor (60).
    options = bytes.fromhex("3501013d07015254001234563902024037070103060c0f1c2a3c0c756468637020312e33362e31ff")
    fixed = bytearray(236)
    fixed[0:4] = b"\x01\x01\x06\x00"
    fixed[4:8] = struct.pack("!I", 0x3903F326)
    fixed[28:34] = bytes.fromhex("525400123456")
    request = parse_bootp(bytes(fixed) + b"\x63\x82\x53\x63" + options)
    assert (request.mac, request.message_type, request.client_arch) == (MAC, "DISCOVER", "")


@pytest.mark.parametrize("cut", [0, 13, 20, 40, 100, 239, 240, 243])
def test_truncated_frames_are_bad_packets(cut: int) -> None:
    frame = build_frame(build_request(MAC, 1, client_arch=7), MAC)
    with pytest.raises(BadPacket):
        parse_frame(frame[:cut])


def test_options_running_past_the_end_are_bad() -> None:
    payload = build_request(MAC, 1)[:-1] + bytes([93, 40, 0])  # claims 40 bytes, has 1, no END
    with pytest.raises(BadPacket, match="claims 40 bytes"):
        parse_bootp(payload)


def test_server_replies_and_missing_message_type_are_rejected() -> None:
    reply = bytearray(build_request(MAC, 2))
    reply[0] = 2
    with pytest.raises(BadPacket, match="BOOTREQUEST"):
        parse_bootp(bytes(reply))
    plain_bootp = build_request(MAC, 1)[:240] + bytes([12, 2]) + b"hi" + bytes([255])
    with pytest.raises(BadPacket, match="option 53"):
        parse_bootp(plain_bootp)


def test_other_traffic_is_not_dhcp() -> None:
    frame = bytearray(build_frame(build_request(MAC, 1), MAC))
    frame[12:14] = b"\x86\xdd"  # IPv6 ethertype
    with pytest.raises(NotDhcp):
        parse_frame(bytes(frame))


def test_random_garbage_never_raises_anything_but_bad_packet() -> None:
    rng = random.Random(5)
    good = build_frame(build_request(MAC, 1, client_arch=9, user_class=b"iPXE"), MAC)
    for _ in range(3000):
        frame = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frame = frame[: rng.randint(0, len(frame))] if rng.random() < 0.3 else frame
        with contextlib.suppress(BadPacket):  # anything else fails the test
            parse_frame(bytes(frame))
