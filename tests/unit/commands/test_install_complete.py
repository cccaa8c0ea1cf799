"""Complete Installation's decisions with in-memory hosts: what is written where, what is started, idempotence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haoscar.commands.install_complete import Host, complete_installation
from haoscar.keyring import parse_keyring
from haoscar.lab.defaults import default_spec

SPEC_TEXT = b"cluster: {name: labcluster}\n"


class FakeHost:
    """A host's files and daemons in memory; ``ss`` answers for the ports of the daemons started here."""

    def __init__(self, host: str, port: int, starts: list[str]) -> None:
        self.host = host
        self.starts = starts
        self.port = port
        self.files: dict[str, tuple[bytes, int]] = {}
        self.commands: list[str] = []
        self.running = False

    def read(self, path: str) -> bytes | None:
        return self.files[path][0] if path in self.files else None

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.files[path] = (data, mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        self.commands.append(command)
        if command.startswith("ss "):
            return 0, f"UNCONN 0 0 0.0.0.0:{self.port} 0.0.0.0:*" if self.running else ""
        if command.startswith(("chmod 600 ", "rm -f ")):
            return 0, ""  # file housekeeping, not a daemon start
        self.running = True
        self.starts.append(self.host)
        return 0, ""


def _setup() -> tuple[Any, dict[str, FakeHost], list[str]]:
    starts: list[str] = []
    hosts = {
        "head1": FakeHost("head1", 7404, starts),
        "head2": FakeHost("head2", 7404, starts),
        "witness": FakeHost("witness", 7405, starts),
    }
    return default_spec(), hosts, starts


KEYS = "/etc/haoscar/keys/"


def _keys(fake: FakeHost) -> dict[str, tuple[bytes, int]]:
    return {path.removeprefix(KEYS): value for path, value in fake.files.items() if path.startswith(KEYS)}


def test_first_run_writes_keys_per_purpose_and_starts_witness_then_primary_then_standby() -> None:
    spec, hosts, order = _setup()

    def status(host: Host) -> dict[str, Any] | None:
        return {"state": "active" if host.role == "primary" else "standby"} if hosts[host.name].running else None

    result = complete_installation(
        spec, SPEC_TEXT, dict(hosts), status=status, start_command="start {what} {node}: {run}", wait_s=2
    )
    assert result.ready and result.key_generated and result.changed
    assert order == ["witness", "head1", "head2"]
    # Both heads hold the same three keyrings; the witness holds the lease keyring only (issue 10, finding 2).
    head1, head2, witness = (_keys(hosts[name]) for name in ("head1", "head2", "witness"))
    assert sorted(head1) == ["heartbeat.key", "lease.key", "replication.key"] and head1 == head2
    assert witness == {"lease.key": head1["lease.key"]}
    assert len({data for data, _ in head1.values()}) == 3  # a key of its own per purpose
    assert all(mode == 0o600 for data, mode in head1.values())
    assert all("/etc/haoscar/ha.key" not in fake.files for fake in hosts.values())
    # 0600: the spec carries the fence credentials (issue 10, finding 6)
    assert all(fake.files["/etc/haoscar/cluster.yaml"] == (SPEC_TEXT, 0o600) for fake in hosts.values())
    # Not systemd: nothing outside /etc/haoscar.
    assert all(path.startswith("/etc/haoscar/") for fake in hosts.values() for path in fake.files)
    assert hosts["head2"].commands[-1] == "start ha head2: ha run --node head2 --spec /etc/haoscar/cluster.yaml"

    again = complete_installation(spec, SPEC_TEXT, dict(hosts), status=status, start_command="start {run}", wait_s=2)
    assert again.ready and not again.changed and not again.key_generated
    assert order == ["witness", "head1", "head2"]  # nothing started twice
    assert all(h.was_running and not h.started and not h.written for h in again.hosts)


def test_an_existing_shared_key_is_split_per_purpose_the_witness_loses_it_and_systemd_gets_its_units() -> None:
    spec, hosts, _ = _setup()
    key = b"ab" * 32 + b"\n"
    hosts["head1"].files["/etc/haoscar/ha.key"] = (key, 0o600)
    hosts["witness"].files["/etc/haoscar/ha.key"] = (key, 0o600)  # what an older release gave the witness
    result = complete_installation(spec, SPEC_TEXT, dict(hosts), status=lambda host: None, wait_s=0.3)
    assert not result.key_generated and not result.ready
    # The running daemons keep talking: every purpose keyring carries the shared key (id 0).
    lease = parse_keyring(_keys(hosts["witness"])["lease.key"][0].decode(), "lease", Path(KEYS + "lease.key"))
    assert lease.current.secret == bytes.fromhex(key.decode().strip())
    assert sorted(_keys(hosts["witness"])) == ["lease.key"]
    assert "rm -f /etc/haoscar/ha.key" in hosts["witness"].commands
    assert b"HAOSCAR_NODE=head2" in hosts["head2"].files["/etc/default/haoscar-ha"][0]
    assert "/etc/systemd/system/haoscar-witness.service" in hosts["witness"].files
    assert "systemctl enable --now haoscar-ha.service" in hosts["head1"].commands[-1]
