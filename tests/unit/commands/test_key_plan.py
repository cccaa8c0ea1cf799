"""The key files set-up writes: all three purposes on both heads, the lease key alone on the witness."""

from __future__ import annotations

from pathlib import Path

from haoscar.commands.key_plan import plan_keys
from haoscar.keyring import parse_keyring
from haoscar.lab.defaults import default_spec

HOSTS = [("head1", "primary"), ("head2", "standby"), ("witness", "witness")]
KEYS = "/etc/haoscar/keys"


def _ids(data: bytes) -> int:
    return parse_keyring(data.decode(), "x", Path("x")).current.id


def test_a_new_installation_gets_three_different_keys_and_the_witness_only_the_lease_key() -> None:
    plan = plan_keys(default_spec(), lambda path: None, HOSTS)
    by_host: dict[str, dict[str, bytes]] = {}
    for f in plan.files:
        assert f.mode == 0o600
        by_host.setdefault(f.host, {})[f.path] = f.data
    assert sorted(by_host["witness"]) == [f"{KEYS}/lease.key"]
    assert sorted(by_host["head1"]) == [f"{KEYS}/{p}.key" for p in ("heartbeat", "lease", "replication")]
    assert by_host["head1"] == by_host["head2"]
    assert by_host["witness"][f"{KEYS}/lease.key"] == by_host["head1"][f"{KEYS}/lease.key"]
    assert len(set(by_host["head1"].values())) == 3
    assert sorted(plan.generated) == ["heartbeat", "lease", "replication"] and not plan.split_shared


def test_existing_keys_are_kept_and_a_shared_key_is_split() -> None:
    existing = {f"{KEYS}/{p}.key": f"current 7 {'cd' * 32}\n".encode() for p in ("heartbeat", "lease", "replication")}
    again = plan_keys(default_spec(), existing.get, HOSTS)
    assert not again.generated and {_ids(f.data) for f in again.files} == {7}
    shared = plan_keys(default_spec(), {"/etc/haoscar/ha.key": b"ab" * 32 + b"\n"}.get, HOSTS)
    assert shared.split_shared and not shared.generated and shared.remove_shared_from == ["witness"]
    assert {_ids(f.data) for f in shared.files} == {0}
    assert all(bytes.fromhex("ab" * 32).hex().encode() in f.data for f in shared.files)
