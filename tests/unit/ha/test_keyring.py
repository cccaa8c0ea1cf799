"""Keys per purpose with key ids: receivers accept the current, staged and (for its grace) previous key only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.events import EventBus
from haoscar.ha.keyset import KeySet
from haoscar.ha.transport import Packets
from haoscar.ha.wire import KIND_HEARTBEAT, KIND_LEASE_REQUEST, Rejected, decode, encode
from haoscar.keyring import (
    Key,
    Keyring,
    KeyringFile,
    generate_keyrings,
    keyring_path,
    load_keyring_file,
    new_key,
    parse_keyring,
    write_keyring,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


OLD, NEW, OTHER = new_key(1), new_key(2), new_key(3)


def _packet(ring: Keyring, seq: int = 1) -> bytes:
    return encode(KIND_HEARTBEAT, {"node": "head1", "inc": 1, "seq": seq}, ring)


def _reason(data: bytes, ring: Keyring) -> str:
    with pytest.raises(Rejected) as info:
        decode(data, ring)
    return info.value.reason


def test_a_receiver_accepts_the_current_and_the_previous_key_and_rejects_others() -> None:
    clock = Clock()
    receiver = Keyring(KeyringFile("heartbeat", NEW, previous=OLD, grace_s=30), clock)
    assert decode(_packet(Keyring(KeyringFile("heartbeat", NEW))), receiver).sender == "head1"
    assert decode(_packet(Keyring(KeyringFile("heartbeat", OLD))), receiver).sender == "head1"
    assert _reason(_packet(Keyring(KeyringFile("heartbeat", OTHER))), receiver) == "bad_mac"  # unknown id
    # The right id with the wrong secret: a forgery, not a key the receiver knows.
    assert _reason(_packet(Keyring(KeyringFile("heartbeat", Key(2, b"x" * 32)))), receiver) == "bad_mac"


def test_an_older_key_than_the_previous_one_is_rejected() -> None:
    receiver = Keyring(KeyringFile("heartbeat", NEW, previous=OLD), Clock())
    older = Keyring(KeyringFile("heartbeat", Key(0, b"z" * 32)))
    assert _reason(_packet(older), receiver) == "bad_mac"


def test_the_previous_key_is_rejected_after_the_grace_period() -> None:
    clock = Clock()
    receiver = Keyring(KeyringFile("heartbeat", OLD), clock)
    receiver.update(KeyringFile("heartbeat", NEW, previous=OLD, grace_s=30))  # the switch
    old_sender = Keyring(KeyringFile("heartbeat", OLD))
    clock.now += 29
    receiver.update(KeyringFile("heartbeat", NEW, previous=OLD, grace_s=30))  # a reload does not restart the grace
    assert decode(_packet(old_sender, 1), receiver).seq == 1
    clock.now += 2
    assert _reason(_packet(old_sender, 2), receiver) == "bad_mac"
    assert decode(_packet(Keyring(KeyringFile("heartbeat", NEW)), 3), receiver).seq == 3


def test_a_staged_key_is_accepted_but_not_used_to_sign() -> None:
    staged = Keyring(KeyringFile("heartbeat", OLD, staged=NEW))
    assert staged.signing == OLD
    assert decode(_packet(Keyring(KeyringFile("heartbeat", NEW))), staged).seq == 1


def test_a_keyring_file_round_trips_and_never_shows_a_secret(tmp_path: Path) -> None:
    content = KeyringFile("lease", NEW, previous=OLD, staged=OTHER, grace_s=45)
    path = tmp_path / "keys" / "lease.key"
    write_keyring(path, content)
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path.parent).st_mode & 0o777 == 0o700
    assert load_keyring_file(tmp_path / "ha.key", "lease") == content
    assert NEW.secret.hex() not in repr(content)
    assert content.next_id() == 4


def test_the_old_single_key_file_is_a_keyring_with_key_id_0(tmp_path: Path) -> None:
    legacy = tmp_path / "ha.key"
    legacy.write_text("ab" * 32 + "\n")
    legacy.chmod(0o600)
    content = load_keyring_file(legacy, "replication")
    assert content.current == Key(0, bytes.fromhex("ab" * 32)) and content.previous is None


def test_the_shared_key_is_refused_once_purpose_keys_exist(tmp_path: Path) -> None:
    legacy = tmp_path / "ha.key"
    legacy.write_text("ab" * 32 + "\n")
    legacy.chmod(0o600)
    assert keyring_path(legacy, "heartbeat") == legacy
    write_keyring(tmp_path / "keys" / "lease.key", KeyringFile("lease", NEW))
    assert keyring_path(legacy, "lease") == tmp_path / "keys" / "lease.key"
    with pytest.raises(UserError, match=r"heartbeat\.key") as info:
        keyring_path(legacy, "heartbeat")
    assert "not used once purpose keys exist" in info.value.message


def test_a_keyring_readable_by_others_or_malformed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "heartbeat.key"
    write_keyring(path, KeyringFile("heartbeat", NEW))
    path.chmod(0o640)
    with pytest.raises(UserError, match="chmod 600"):
        load_keyring_file(tmp_path / "ha.key", "heartbeat")
    with pytest.raises(UserError, match="line 1"):
        parse_keyring("current two abcd\n", "heartbeat", path)
    with pytest.raises(UserError, match="no `current` key"):
        parse_keyring(f"previous 1 {'ab' * 32}\n", "heartbeat", path)


def test_keygen_refuses_to_replace_keys_without_force(tmp_path: Path) -> None:
    written = generate_keyrings(tmp_path / "keys")
    assert sorted(p.name for p in written) == ["heartbeat.key", "lease.key", "replication.key"]
    with pytest.raises(UserError, match="--force"):
        generate_keyrings(tmp_path / "keys", ("lease",))
    secrets = {load_keyring_file(tmp_path / "ha.key", p).current.secret for p in ("heartbeat", "lease", "replication")}
    assert len(secrets) == 3  # three different keys, not one key three times


def test_a_heartbeat_signed_with_the_lease_key_is_rejected_by_a_head(tmp_path: Path) -> None:
    generate_keyrings(tmp_path / "keys")
    head = KeySet.load(tmp_path / "ha.key", ("heartbeat", "lease"))
    packets = Packets(head, EventBus("head2"), incarnation=1)
    body = {"node": "head1", "inc": 1, "seq": 1, "state": "active"}
    forged = encode(KIND_HEARTBEAT, body, head["lease"])  # what a witness (which holds only lease.key) could sign
    assert packets.accept(forged, KIND_HEARTBEAT, ("head1",)) is None
    assert packets.drops.counts["bad_mac"] == 1
    genuine = encode(KIND_HEARTBEAT, {**body, "seq": 2}, head["heartbeat"])
    assert packets.accept(genuine, KIND_HEARTBEAT, ("head1",)) is not None
    request = encode(KIND_LEASE_REQUEST, {**body, "seq": 3, "op": "acquire"}, head["heartbeat"])
    assert packets.accept(request, KIND_LEASE_REQUEST, ("head1",)) is None  # and the other way round


def test_a_reload_switches_keys_and_a_bad_file_keeps_the_old_ones(tmp_path: Path) -> None:
    generate_keyrings(tmp_path / "keys")
    keys = KeySet.load(tmp_path / "ha.key", ("heartbeat",))
    first = keys["heartbeat"].signing
    write_keyring(tmp_path / "keys" / "heartbeat.key", KeyringFile("heartbeat", new_key(2), previous=first))
    assert keys.reload()["ok"] and keys["heartbeat"].signing.id == 2
    (tmp_path / "keys" / "heartbeat.key").chmod(0o644)
    result = keys.reload()
    assert not result["ok"] and "chmod 600" in result["error"]
    assert keys["heartbeat"].signing.id == 2
