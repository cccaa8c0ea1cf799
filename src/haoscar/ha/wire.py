"""The on-the-wire format of heartbeats and witness lease messages, authenticated with HMAC-SHA256.

A packet is a fixed header, a JSON body and a MAC over both::

    magic "HAOS" (4) | version (1) | kind (1) | body length (2) | key id (4) | body (JSON) | HMAC-SHA256 (32)

The header is fixed and versioned so that a packet of another version or kind is rejected before the body is
parsed, and the length field lets a truncated packet be told apart from a forged one. The key id (covered by the
MAC) names the key of the sender's keyring it signed with, so receivers accept the current and the previous key
while a key is rotated (``haoscar.keyring``); an id the receiver does not accept is ``bad_mac``. JSON keeps the
body readable in a packet capture; a heartbeat is about 300 bytes, far below any MTU.

Nothing here raises on bad input except ``Rejected``, which carries the reason that the daemon counts
(``truncated``, ``garbage``, ``bad_mac``); replays are judged by ``haoscar.ha.replay``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from haoscar.keyring import Keyring

KeyLike = bytes | Keyring  # bytes: a single key of id 0 (tests, and the shared key of older installations)

MAGIC: Final = b"HAOS"
VERSION: Final = 2  # 2: the key id in the header
HEADER = struct.Struct("!4sBBHI")
PREFIX = struct.Struct("!4sBBH")  # magic, version, kind, length: the same in version 1
MAC_LEN: Final = 32
MAX_BODY: Final = 8192

KIND_HEARTBEAT: Final = 1
KIND_LEASE_REQUEST: Final = 2
KIND_LEASE_REPLY: Final = 3
KINDS: Final = frozenset({KIND_HEARTBEAT, KIND_LEASE_REQUEST, KIND_LEASE_REPLY})

# The reasons a packet is dropped, in the order status shows them.
DROP_REASONS: Final = ("truncated", "garbage", "bad_mac", "replay", "unknown_sender", "wrong_kind")


class Rejected(Exception):
    """A packet that is dropped; ``reason`` is one of ``DROP_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Packet:
    kind: int
    body: dict[str, Any]

    @property
    def sender(self) -> str:
        return str(self.body.get("node", ""))

    @property
    def incarnation(self) -> int:
        return int(self.body.get("inc", 0))

    @property
    def seq(self) -> int:
        return int(self.body.get("seq", 0))


def _keyring(key: KeyLike) -> Keyring:
    return key if isinstance(key, Keyring) else Keyring.of_secret(key)


def encode(kind: int, body: dict[str, Any], key: KeyLike) -> bytes:
    """Sign with the keyring's current key (its id goes into the header)."""
    signing = _keyring(key).signing
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    if len(raw) > MAX_BODY:
        raise ValueError(f"body of {len(raw)} bytes exceeds {MAX_BODY}")
    head = HEADER.pack(MAGIC, VERSION, kind, len(raw), signing.id)
    return head + raw + hmac.new(signing.secret, head + raw, hashlib.sha256).digest()


def decode(data: bytes, key: KeyLike) -> Packet:
    """Check the header, the length and the MAC, then parse the body. Raises ``Rejected``."""
    if len(data) < PREFIX.size:
        raise Rejected("truncated", f"{len(data)} bytes, shorter than the header")
    magic, version, kind, length = PREFIX.unpack_from(data)  # the part every version shares, judged first
    if magic != MAGIC or version != VERSION or kind not in KINDS:
        raise Rejected("garbage", f"not a haoscar packet of version {VERSION}")
    if len(data) < HEADER.size:
        raise Rejected("truncated", f"{len(data)} bytes, shorter than the header")
    key_id = HEADER.unpack_from(data)[4]
    if length > MAX_BODY:
        raise Rejected("garbage", f"body length {length} too large")
    expected = HEADER.size + length + MAC_LEN
    if len(data) < expected:
        raise Rejected("truncated", f"{len(data)} of {expected} bytes")
    if len(data) > expected:
        raise Rejected("garbage", f"{len(data) - expected} trailing bytes")
    secret = _keyring(key).secret_for(key_id)
    if secret is None:  # unknown, retired, or previous past its grace
        raise Rejected("bad_mac", f"key id {key_id} is not accepted")
    signed, mac = data[: HEADER.size + length], data[HEADER.size + length :]
    # compare_digest: a forger must not learn how many leading bytes of a guessed MAC were right.
    if not hmac.compare_digest(mac, hmac.new(secret, signed, hashlib.sha256).digest()):
        raise Rejected("bad_mac", "HMAC does not match the key")
    try:
        body = json.loads(signed[HEADER.size :])
    except ValueError as exc:  # authenticated but unparsable: a bug on the sender, still never a crash here
        raise Rejected("garbage", f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("node"), str):
        raise Rejected("garbage", "body is not an object with a node name")
    for name in ("inc", "seq"):
        if not isinstance(body.get(name), int) or body[name] < 0:
            raise Rejected("garbage", f"body field {name} is not a non-negative integer")
    return Packet(kind=kind, body=body)
