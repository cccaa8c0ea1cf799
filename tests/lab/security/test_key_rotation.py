"""Separate keys per purpose, and their rotation while HA runs (issue 10, finding 2 and the key rotation).

Attacker positions: the witness host (it holds only the lease key: a heartbeat it signs is rejected by the heads),
and anyone who learned an old key (a packet signed with it after the grace period is rejected). The legitimate
path: all three HMAC keys rotated while a 10 ms owner sampler watches the VIP, with no failover, then a switchover
and a crash-failover with the new keys.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.ha.wire import KIND_HEARTBEAT, encode
from haoscar.keyring import Keyring, KeyringFile, parse_keyring
from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.keys_lab import lab_rotation
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.scenarios.owner_sampler import OwnerSampler, in_netns
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"
GRACE_S = 2.0


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("keys")
    with ha_lab(load_spec(LAB_YAML), unique_lab_name("keys"), where) as running:
        yield running


def _keyring(ha: HaLab, host: str, purpose: str) -> KeyringFile:
    path = ha.lab.host_dir(host) / "etc/haoscar/keys" / f"{purpose}.key"
    return parse_keyring(path.read_text(), purpose, path)


def _send_heartbeats(ha: HaLab, ring: Keyring, count: int) -> dict[str, int]:
    """``count`` heartbeats claiming to be the standby, fresh (new incarnation), signed with ``ring``, sent from
    the public client to the primary; returns the primary's drop counters' growth."""
    before = (ha.status(ha.primary) or {})["dropped"]
    target = (str(ha.spec.heads.primary.public_ip), ha.spec.ha.port)
    sender = in_netns(ha.lab.netns("client"), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    inc = time.time_ns() * 1000  # newer than any life of the standby: only the key can refuse it
    with sender:
        for seq in range(1, count + 1):
            body = {"node": ha.standby, "inc": inc, "seq": seq, "state": "takeover", "vip": True}
            sender.sendto(encode(KIND_HEARTBEAT, body, ring), target)
    time.sleep(0.5)
    after = (ha.status(ha.primary) or {})["dropped"]
    return {k: after[k] - before[k] for k in after}


def test_the_witness_holds_only_the_lease_key_and_cannot_sign_heartbeats(ha: HaLab) -> None:
    assert ha.witness_host is not None
    etc = ha.lab.host_dir(ha.witness_host) / "etc/haoscar"
    assert sorted(os.listdir(etc / "keys")) == ["lease.key"]
    assert not (etc / "ha.key").exists()
    for head in (ha.primary, ha.standby):
        assert sorted(os.listdir(ha.lab.host_dir(head) / "etc/haoscar/keys")) == [
            "heartbeat.key", "lease.key", "replication.key"
        ]  # fmt: skip
    # What a compromised witness could do with what it has: sign a heartbeat with the lease key.
    lease = Keyring(_keyring(ha, ha.witness_host, "lease"))
    dropped = _send_heartbeats(ha, lease, 5)
    assert dropped["bad_mac"] == 5
    assert (ha.status(ha.primary) or {})["state"] == "active"
    assert (ha.status(ha.standby) or {})["state"] == "standby"


def test_rotating_every_key_causes_no_failover_and_old_keys_die_after_the_grace(ha: HaLab) -> None:
    old_heartbeat = _keyring(ha, ha.primary, "heartbeat")
    old = {p: _keyring(ha, ha.primary, p).current.id for p in ("heartbeat", "lease", "replication")}
    assert pings(ha.lab, "client", ha.vip)  # the client's ARP cache names the VIP's owner from now on
    with OwnerSampler(ha) as sampler:
        time.sleep(0.3)
        rotated = lab_rotation(ha, grace_s=GRACE_S).rotate(("heartbeat", "lease", "replication"))
        time.sleep(0.5)
    assert {r.purpose: (r.old, r.new) for r in rotated} == {p: (i, i + 1) for p, i in old.items()}
    assert len(sampler.samples) > 100
    assert {s.client_owner for s in sampler.samples} == {ha.primary}  # nobody else ever answered for the VIP
    assert all(s.reachable == {ha.primary} for s in sampler.samples)
    for head, state in ((ha.primary, "active"), (ha.standby, "standby")):
        status = ha.status(head) or {}
        assert status["state"] == state and status["peer"]["state"] in ("active", "standby")
        reply = ha.control(head, "reload-keys")
        assert reply["ok"] and reply["keys"]["heartbeat"]["current"] == old["heartbeat"] + 1
        assert reply["keys"]["heartbeat"]["previous"] is None and reply["keys"]["lease"]["staged"] is None
    assert _keyring(ha, ha.witness_host or "", "lease").current.id == old["lease"] + 1
    assert sorted(os.listdir(ha.lab.host_dir(ha.witness_host or "") / "etc/haoscar/keys")) == ["lease.key"]
    # Someone who kept the old heartbeat key: rejected now that the grace period is over.
    dropped = _send_heartbeats(ha, Keyring(old_heartbeat), 5)
    assert dropped["bad_mac"] == 5
    assert (ha.status(ha.primary) or {})["state"] == "active"


def test_switchover_and_crash_failover_work_with_the_new_keys(ha: HaLab) -> None:
    assert _keyring(ha, ha.primary, "heartbeat").current.id >= 2  # after the rotation above
    with OwnerSampler(ha) as sampler:
        reply = ha.control(ha.primary, "switchover")
        assert reply["ok"], reply
        ha.wait_for(ha.standby, "active", 10)
        ha.wait_for(ha.primary, "standby", 10)
        time.sleep(0.2)
    assert sampler.max_owners() == 1
    assert sampler.samples[-1].reachable == {ha.standby}
    assert pings(ha.lab, "client", ha.vip)
    assert wait_until(lambda: (ha.status(ha.standby) or {}).get("peer", {}).get("state") == "standby", 5)
    with OwnerSampler(ha) as sampler:
        time.sleep(0.2)
        crashed = time.monotonic()
        ha.lab.crash(ha.standby)  # the active head now
        status = ha.wait_for(ha.primary, "active", 10)
        taken = sampler.first_owned_by(ha.primary, crashed)
    assert taken is not None
    assert status["last_failover"]["kind"] == "failover"
    assert sampler.max_owners(crashed) == 1
    # The crashed head comes back as standby with the new keys and a larger incarnation than its last life.
    ha.lab.restore(ha.standby)
    ha.start_daemon(ha.standby)
    ha.wait_for(ha.standby, "standby", 15)
    assert wait_until(lambda: (ha.status(ha.primary) or {}).get("peer", {}).get("state") == "standby", 5)
