"""``keys rotate`` with in-memory hosts: what each host holds after every step, and that the witness only ever
receives the lease key."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from haoscar.commands.env import Env, run_program
from haoscar.commands.keys import KeyRotation, RotateReport, purposes_of, rotate_hmac
from haoscar.commands.ssh_rotation import swap_ssh_key
from haoscar.errors import UserError
from haoscar.keyring import parse_keyring
from haoscar.lab.defaults import default_spec

KEYS = "/etc/haoscar/keys"


class FakeHost:
    def __init__(self, name: str, log: list[tuple[str, dict[str, Any]]]) -> None:
        self.host = name
        self.files: dict[str, tuple[bytes, int]] = {}
        self.log = log

    def read(self, path: str) -> bytes | None:
        return self.files[path][0] if path in self.files else None

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.files[path] = (data, mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        if command.startswith("rm -f "):
            self.files.pop(command.rsplit(maxsplit=1)[-1].strip("'"), None)
        elif command.startswith("reload "):
            self.log.append((self.host, self.keyrings()))  # what the daemon loads at this reload
        return 0, ""

    def keyrings(self) -> dict[str, Any]:
        return {
            Path(p).stem: parse_keyring(data.decode(), Path(p).stem, Path(p)).ids()
            for p, (data, _) in self.files.items()
            if p.startswith(KEYS)
        }


def _cluster(shared: bool) -> tuple[Any, dict[str, FakeHost], list[tuple[str, dict[str, Any]]]]:
    log: list[tuple[str, dict[str, Any]]] = []
    hosts = {name: FakeHost(name, log) for name in ("head1", "head2", "witness")}
    if shared:
        key = (secrets.token_hex(32) + "\n").encode()
        for host in hosts.values():
            host.files["/etc/haoscar/ha.key"] = (key, 0o600)
    return default_spec(), hosts, log


def _rotation(spec: Any, hosts: dict[str, FakeHost], sleeps: list[float]) -> KeyRotation:
    return KeyRotation(
        spec, dict(hosts), grace_s=30, settle_s=0.5, reload_command="reload {what} {node}", sleep=sleeps.append
    )


def test_an_installation_with_the_shared_key_is_split_and_the_witness_keeps_only_the_lease_key() -> None:
    spec, hosts, _log = _cluster(shared=True)
    sleeps: list[float] = []
    report = RotateReport()
    rotate_hmac(_rotation(spec, hosts, sleeps), purposes_of("all"), report)
    assert report.split_from_shared_key
    assert sorted(hosts["witness"].files) == [f"{KEYS}/lease.key"]  # no heartbeat, replication or shared key
    for head in ("head1", "head2"):
        assert sorted(hosts[head].files) == [f"{KEYS}/{p}.key" for p in ("heartbeat", "lease", "replication")]
        assert all(mode == 0o600 for _, mode in hosts[head].files.values())
    assert hosts["head1"].files == hosts["head2"].files
    assert hosts["witness"].files[f"{KEYS}/lease.key"] == hosts["head1"].files[f"{KEYS}/lease.key"]
    assert {(r.purpose, r.old, r.new) for r in report.rotated} == {
        ("heartbeat", 0, 1), ("lease", 0, 1), ("replication", 0, 1)
    }  # fmt: skip
    assert 30 in sleeps  # the grace period was waited before the old keys were retired


def test_every_host_knows_the_new_key_before_any_host_signs_with_it() -> None:
    spec, hosts, log = _cluster(shared=False)
    rotation = _rotation(spec, hosts, [])
    for name in ("head1", "head2"):
        for purpose in ("heartbeat", "lease", "replication"):
            hosts[name].files[f"{KEYS}/{purpose}.key"] = (f"current 4 {'ab' * 32}\n".encode(), 0o600)
    hosts["witness"].files[f"{KEYS}/lease.key"] = (f"current 4 {'ab' * 32}\n".encode(), 0o600)
    rotation.rotate(("heartbeat", "lease"))
    steps = [rings["lease"] for host, rings in log if host == "witness"]
    assert steps == [
        {"current": 4, "staged": 5, "previous": None},  # stage: accepted by all, used by none
        {"current": 5, "staged": None, "previous": 4},  # switch: the old one accepted during the grace
        {"current": 5, "staged": None, "previous": None},  # retire
    ]
    # No host was told to sign with key 5 before every host had reloaded with key 5 staged.
    first_switch = next(i for i, (_, rings) in enumerate(log) if rings.get("heartbeat", {}).get("current") == 5)
    staged = {host for host, rings in log[:first_switch] if rings.get("heartbeat", {}).get("staged") == 5}
    assert staged == {"head1", "head2"}
    assert parse_keyring(hosts["head1"].files[f"{KEYS}/replication.key"][0].decode(), "r", Path("x")).current.id == 4


def test_an_unknown_purpose_names_the_field() -> None:
    with pytest.raises(UserError, match="purpose: 'tls'"):
        purposes_of("tls")


def test_the_ssh_key_is_authorized_before_the_switch_and_the_old_one_removed_after(tmp_path: Path) -> None:
    env = Env(tmp_path, run=run_program)
    key = tmp_path / "ssh" / "id_ed25519"
    key.parent.mkdir()
    assert env.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]).returncode == 0
    old_pub = key.with_name("id_ed25519.pub").read_text().strip()
    hosts = {name: FakeHost(name, []) for name in ("head1", "head2", "witness")}
    for host in hosts.values():
        host.files["/root/.ssh/authorized_keys"] = (f"ssh-rsa AAAAother admin\n{old_pub}\n".encode(), 0o600)
    seen_at_check: list[str] = []

    def check_login(new_key: Path) -> None:
        new_pub = new_key.with_name(new_key.name + ".pub").read_text().strip()
        seen_at_check.extend(
            h.host for h in hosts.values() if new_pub.encode() in h.files["/root/.ssh/authorized_keys"][0]
        )
        assert key.with_name("id_ed25519.pub").read_text().strip() == old_pub  # not switched yet

    old, new = swap_ssh_key(env, key, dict(hosts), "/root/.ssh/authorized_keys", check_login)
    assert old == old_pub and new != old_pub and len(seen_at_check) == 3
    assert key.with_name("id_ed25519.pub").read_text().strip() == new
    for host in hosts.values():
        lines = host.files["/root/.ssh/authorized_keys"][0].decode().splitlines()
        assert lines == ["ssh-rsa AAAAother admin", new]  # the administrator's key is untouched
    assert not key.with_name("id_ed25519.old").exists() and not key.with_name("id_ed25519.new").exists()
