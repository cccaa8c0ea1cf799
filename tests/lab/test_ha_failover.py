"""The HA daemon in a lab with real daemons: cold start, partitions, a lost network or witness, a standby crash,
forged packets, then the primary's crash, its return, and failback.

One lab for the whole module (bringing HA up costs seconds); each test leaves head1 active and head2 standby, except
the last ones, which run in order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from haoscar.ha.wire import KIND_HEARTBEAT, encode
from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.scenarios.owner_sampler import OwnerSampler, in_netns
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
NODE02_MAC = "52:54:00:00:01:02"
# busybox udhcpc calls this on every lease it gets: "bound" (a new lease) or "renew" (an ACK to a REQUEST)
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in bound|renew) echo "$1 ip=$ip server=$serverid" >> /srv/udhcpc.events ;; esac
exit 0
"""


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("ha")
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["clients"][0]["macs"] = {"node02": NODE02_MAC}  # the active head's dnsmasq serves node02 its address
    raw["ha"]["services"] = [{"name": "dhcp", "kind": "dnsmasq"}]
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    with ha_lab(load_spec(path), unique_lab_name("ha"), where) as running:
        yield running


def _steady(ha: HaLab, active: str, standby: str) -> None:
    ha.wait_for(active, "active", 10)
    ha.wait_for(standby, "standby", 10)
    assert wait_until(lambda: (ha.status(active) or {}).get("peer", {}).get("state") == "standby", 5)


def _events(ha: HaLab, head: str) -> list[dict[str, object]]:
    path = ha.lab.host_dir(head) / "var/lib/haoscar/ha/events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cold_start_makes_the_primary_active_with_the_lease(ha: HaLab) -> None:
    first, second = ha.status(ha.primary), ha.status(ha.standby)
    assert first is not None and second is not None
    assert (first["state"], second["state"]) == ("active", "standby")
    assert first["lease"]["valid"] and first["lease"]["holder"] == ha.primary
    # the standby asks the witness too (a query), without taking anything
    assert wait_until(lambda: (ha.status(ha.standby) or {}).get("lease", {}).get("holder") == ha.primary, 3)
    assert first["vip"]["held"] and not second["vip"]["held"]
    assert pings(ha.lab, "client", ha.vip)
    with OwnerSampler(ha) as sampler:
        time.sleep(0.3)
    assert {s.client_owner for s in sampler.samples} == {ha.primary}
    assert sampler.max_owners() == 1


def _ha_cli(ha: HaLab, head: str, *args: str) -> str:
    argv = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", "ha", "status", *args]
    return ha.lab.exec(head, argv, timeout=30).stdout


def test_ha_status_shows_both_heads_side_by_side(ha: HaLab) -> None:
    both = json.loads(_ha_cli(ha, ha.standby, "--json"))
    local, peer = both["local"], both["peer"]
    assert (local["node"], local["state"]) == (ha.standby, "standby")
    # the peer's own view of itself, read over HTTP: its lease, its VIP, its resources
    assert peer["reachable"] and (peer["node"], peer["state"]) == (ha.primary, "active")
    assert peer["vip"]["held"] and peer["lease"]["valid"] and peer["lease"]["holder"] == ha.primary
    head1 = ha.spec.heads.primary
    assert peer["url"].split("/")[2].split(":")[0] in {
        str(head1.private_ip),
        str(head1.public_ip),
        str(head1.heartbeat_ip),
    }
    assert set(peer["dropped"]) >= {"bad_mac", "replay"} and "networks" in peer["peer"]
    # the daemons measure their own event loop's lag, on the control socket and over HTTP alike
    for status in (local, peer):
        assert status["loop_lag"]["samples"] > 0
        assert status["max_loop_lag_ms"] == status["loop_lag"]["max_lag_ms"] >= status["loop_lag"]["last_lag_ms"]
    text = _ha_cli(ha, ha.primary)
    assert ha.primary in text and ha.standby in text and "unreachable" not in text
    assert "lease holder" in text and "dropped packets" in text


def test_heads_cut_from_each_other_but_not_from_the_witness_do_not_fail_over(ha: HaLab) -> None:
    seen = len(_events(ha, ha.standby))
    states: list[object] = []
    with OwnerSampler(ha) as sampler:
        ha.lab.partition(ha.primary, ha.standby)
        until = time.monotonic() + 5.0
        while time.monotonic() < until:
            states.append((ha.status(ha.standby) or {}).get("state"))
            time.sleep(0.05)
        during, standby = ha.status(ha.primary), ha.status(ha.standby)
        ha.lab.heal()
        _steady(ha, ha.primary, ha.standby)
    assert during is not None and during["state"] == "active" and not during["peer"]["alive"]
    assert sampler.max_owners() == 1
    assert all(s.reachable == {ha.primary} for s in sampler.samples)
    # The standby asks for the lease while staying standby: no role change, no flapping.
    assert set(states) == {"standby"} and len(states) > 50
    assert standby is not None and standby["lease"]["probing"] and standby["lease"]["holder"] == ha.primary
    assert any("the peer is alive, no failover" in w for w in standby["warnings"])
    assert wait_until(lambda: any(e["kind"] == "lease.denied.ok" for e in _events(ha, ha.standby)[seen:]), 3)
    new = _events(ha, ha.standby)[seen:]
    assert [e for e in new if e["kind"] == "role"] == []
    denied = [(e["kind"], e["severity"]) for e in new if str(e["kind"]).startswith("lease.denied")]
    assert denied == [("lease.denied", "warning"), ("lease.denied.ok", "info")]


def test_one_network_down_is_degraded_never_a_failover(ha: HaLab) -> None:
    with OwnerSampler(ha) as sampler:
        ha.lab.partition(ha.primary, ha.standby, "heartbeat")

        def warned(head: str) -> bool:
            return any("heartbeat" in w for w in (ha.status(head) or {}).get("warnings", []))

        assert wait_until(lambda: warned(ha.primary) and warned(ha.standby), 5)
        first, second = ha.status(ha.primary), ha.status(ha.standby)
        ha.lab.heal()
    assert first is not None and second is not None
    assert (first["state"], second["state"]) == ("active", "standby")
    assert not first["peer"]["networks"]["heartbeat"]["up"] and first["peer"]["networks"]["public"]["up"]
    assert any("heartbeat" in w for w in first["warnings"]) and any("heartbeat" in w for w in second["warnings"])
    assert all(s.reachable == {ha.primary} for s in sampler.samples)
    assert wait_until(lambda: not (ha.status(ha.primary) or {}).get("degraded", True), 3)


def test_witness_down_is_a_warning_and_no_role_change(ha: HaLab) -> None:
    assert ha.witness_host is not None
    with OwnerSampler(ha) as sampler:
        ha.terminate(ha.witness_host, "witness")
        time.sleep(2.0)  # 2.5 leases: the primary keeps the role because the standby confirms it every heartbeat
        during = ha.status(ha.primary)
        ha.start_witness()
        valid = wait_until(lambda: (ha.status(ha.primary) or {}).get("lease", {}).get("valid"), 10)
        assert valid, ha.logs(ha.primary) + ha.logs(ha.standby) + ha.logs(ha.witness_host, "witness")
    assert during is not None and during["state"] == "active" and not during["lease"]["valid"]
    assert any("witness unreachable" in w for w in during["warnings"])
    assert all(s.reachable == {ha.primary} for s in sampler.samples)
    kinds = [(e["kind"], e["severity"]) for e in _events(ha, ha.primary)]
    assert ("witness", "warning") in kinds


def test_forged_replayed_and_garbage_heartbeats_are_dropped_and_counted(ha: HaLab) -> None:
    target = (str(ha.spec.heads.primary.public_ip), ha.spec.ha.port)
    before = ha.status(ha.primary)
    assert before is not None
    # A real heartbeat of head2, captured on the wire, to be replayed.
    sniff = in_netns(ha.lab.netns(ha.primary), _udp_sniffer)
    with sniff:
        sniff.settimeout(2.0)
        captured = _next_payload(sniff, ha.spec.ha.port)
    forged = encode(KIND_HEARTBEAT, {"node": ha.standby, "inc": 1, "seq": 1, "state": "takeover"}, b"f" * 32)
    sender = in_netns(ha.lab.netns("client"), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with sender:
        for _ in range(5):
            sender.sendto(forged, target)
            sender.sendto(captured, target)
            sender.sendto(b"\x00garbage", target)
            sender.sendto(captured[:30], target)
    time.sleep(0.5)
    after = ha.status(ha.primary)
    assert after is not None and after["state"] == "active"
    dropped = {k: after["dropped"][k] - before["dropped"][k] for k in after["dropped"]}
    assert dropped["bad_mac"] == 5 and dropped["replay"] >= 5 and dropped["garbage"] == 5
    assert dropped["truncated"] == 5


def _udp_sniffer() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    return sock


def _next_payload(sock: socket.socket, port: int) -> bytes:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        packet = sock.recv(4096)
        header = (packet[0] & 0x0F) * 4
        if packet[9] == 17 and int.from_bytes(packet[header + 2 : header + 4], "big") == port:
            return packet[header + 8 :]
    raise AssertionError("no heartbeat seen on the wire")


def test_standby_crash_keeps_the_active_serving_degraded_with_an_alert(ha: HaLab) -> None:
    with OwnerSampler(ha) as sampler:
        ha.lab.crash(ha.standby)
        assert wait_until(lambda: not (ha.status(ha.primary) or {}).get("peer", {}).get("alive", True), 3)
        time.sleep(0.3)
        during = ha.status(ha.primary)
        assert pings(ha.lab, "client", ha.vip)
    assert during is not None and during["state"] == "active" and during["degraded"]
    assert all(s.reachable == {ha.primary} for s in sampler.samples)
    both = json.loads(_ha_cli(ha, ha.primary, "--json", "--timeout", "0.5"))
    assert both["local"]["state"] == "active" and not both["peer"]["reachable"] and both["peer"]["error"]
    assert "unreachable" in _ha_cli(ha, ha.primary, "--timeout", "0.5")
    assert any(e["kind"] == "peer" and e["severity"] == "critical" for e in _events(ha, ha.primary))
    ha.lab.restore(ha.standby)
    ha.start_daemon(ha.standby)
    _steady(ha, ha.primary, ha.standby)


def test_switchover_moves_the_role_and_back(ha: HaLab) -> None:
    with OwnerSampler(ha) as sampler:
        reply = ha.control(ha.primary, "switchover")
        assert reply["ok"], reply
        _steady(ha, ha.standby, ha.primary)
        assert pings(ha.lab, "client", ha.vip)
        reply = ha.control(ha.standby, "failback")
        assert reply["ok"], reply
        _steady(ha, ha.primary, ha.standby)
    assert sampler.max_owners() == 1
    assert ha.primary in {s.client_owner for s in sampler.samples[-5:]}
    refused = ha.control(ha.standby, "switchover")
    assert not refused["ok"] and "active head" in refused["error"]


def test_sigterm_demotes_in_order_and_hands_over(ha: HaLab) -> None:
    with OwnerSampler(ha) as sampler:
        stopped = time.monotonic()
        assert ha.terminate(ha.primary) == 0
        ha.wait_for(ha.standby, "active", 10)
        took = sampler.first_owned_by(ha.standby, stopped)
        ha.start_daemon(ha.primary)
        _steady(ha, ha.standby, ha.primary)
        assert ha.control(ha.primary, "failback")["ok"]
        _steady(ha, ha.primary, ha.standby)
    assert sampler.max_owners() == 1 and took is not None
    kinds = [e["kind"] for e in _events(ha, ha.primary)]
    assert "daemon.stop" in kinds
    log = ha.log_path(ha.primary, "ha").read_text()
    assert "<6>haoscar-ha[head1]: role stopping -> stopped" in log


def test_primary_cut_from_everyone_demotes_before_the_standby_takes_over(ha: HaLab) -> None:
    others = [host for host in ha.lab.hosts if host != ha.primary]
    with OwnerSampler(ha) as sampler:
        time.sleep(0.2)
        cut = time.monotonic()
        for host in others:
            ha.lab.partition(ha.primary, host)
        ha.wait_for(ha.standby, "active", 10)
        # its control socket is a file, reachable while its networks are cut; it keeps asking the witness in vain
        assert wait_until(lambda: (ha.status(ha.primary) or {}).get("state") in ("standby", "takeover"), 10)
        isolated = ha.status(ha.primary)
        ha.lab.heal()
        _steady(ha, ha.standby, ha.primary)
        reply = ha.control(ha.primary, "failback")
        assert reply["ok"], reply
        _steady(ha, ha.primary, ha.standby)
    dropped = sampler.last_owned_by(ha.primary)
    assert sampler.max_owners(cut) == 1
    lost = max(s.t for s in sampler.samples if s.t < (sampler.first_owned_by(ha.standby, cut) or 0))
    took = sampler.first_owned_by(ha.standby, cut)
    assert took is not None and dropped is not None
    primary_gone = next(s.t for s in sampler.samples if s.t >= cut and ha.primary not in s.reachable)
    assert primary_gone <= took and lost < took
    assert isolated is not None and not isolated["vip"]["held"]


def _dhcp_events(ha: HaLab) -> list[str]:
    path = ha.lab.host_dir("node02") / "srv/udhcpc.events"
    return path.read_text().splitlines() if path.exists() else []


def _start_dhcp_client(ha: HaLab) -> subprocess.Popen[bytes]:
    """node02 as a bound DHCP client: busybox udhcpc in the foreground, holding a lease of the active head."""
    script = ha.lab.host_dir("node02") / "srv/udhcpc.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    (script.parent / "udhcpc.events").unlink(missing_ok=True)
    argv = ["busybox", "udhcpc", "-f", "-i", "eth0", "-T", "1", "-t", "10", "-s", "/srv/udhcpc.sh"]
    return ha.lab.popen("node02", argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_primary_crash_fails_over_with_one_owner_and_manual_failback(ha: HaLab) -> None:
    private = {ha.primary: str(ha.spec.heads.primary.private_ip), ha.standby: str(ha.spec.heads.standby.private_ip)}
    udhcpc = _start_dhcp_client(ha)
    try:
        assert wait_until(lambda: bool(_dhcp_events(ha)), 15), "node02 got no DHCP lease from the active head"
        assert _dhcp_events(ha) == [f"bound ip=198.18.0.102 server={private[ha.primary]}"]
        with OwnerSampler(ha) as sampler:
            time.sleep(0.2)
            crashed = time.monotonic()
            ha.lab.crash(ha.primary)
            second = ha.wait_for(ha.standby, "active", 10)
            assert pings(ha.lab, "client", ha.vip)
            taken = sampler.first_owned_by(ha.standby, crashed)
            # node02 renews the lease head1 gave it (SIGUSR1 = renew now): the REQUEST unicast to head1 goes
            # unanswered, the rebinding broadcast is ACKed by head2's dnsmasq, which never saw that lease.
            os.kill(udhcpc.pid, signal.SIGUSR1)
            renewed = f"renew ip=198.18.0.102 server={private[ha.standby]}"
            assert wait_until(lambda: renewed in _dhcp_events(ha), 15), _dhcp_events(ha)
            ha.lab.restore(ha.primary)
            restored = time.monotonic()
            ha.start_daemon(ha.primary)
            ha.wait_for(ha.primary, "standby", 10)
            time.sleep(1.0)  # failback: manual -> the primary stays standby
            assert (ha.status(ha.standby) or {}).get("state") == "active"
            failback = time.monotonic()
            reply = ha.control(ha.primary, "failback")
            assert reply["ok"], reply
            _steady(ha, ha.primary, ha.standby)
    finally:
        udhcpc.send_signal(signal.SIGTERM)
        try:
            udhcpc.wait(5)
        except subprocess.TimeoutExpired:
            udhcpc.kill()
            udhcpc.wait(5)
    last = second["last_failover"]
    assert last["kind"] == "failover"
    # took_s counts from the last heartbeat heard, since_dead_s from the moment the peer was declared dead:
    # the difference is at least dead_time (0.6 s) and the second is the time the lease and the VIP took.
    assert last["since_dead_s"] is not None and 0 <= last["since_dead_s"] <= last["took_s"] - 0.55
    assert taken is not None
    assert sampler.max_owners() == 1
    assert not ha.fence or not ha.fence.requests  # a crashed host does not answer for the VIP: no fence needed
    # The restarted primary announced the VIP only after the failback, never while the standby held it.
    assert sampler.first_owned_by(ha.primary, restored) is not None
    assert sampler.announced_by(ha.primary, restored)
    assert all(a.t >= failback for a in sampler.announced_by(ha.primary, restored))
    print(f"failover: VIP on {ha.standby} {(taken - crashed) * 1000:.0f} ms after the crash")
