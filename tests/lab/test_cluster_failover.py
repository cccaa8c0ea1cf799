"""The cluster keeps working through a head failover (issue 11), with real daemons in a lab: the private alias IP,
dnsmasq rendered from the replicated database and the boot server move with the active head; the public side's
health moves the role (link down on the active head), and the standby's own loss is only a warning.

Two labs: the public-side cases run in order on one without replication (head1 active, its standby's link down,
then its own); the crash runs on one with replication (the database is replicated synchronously).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haoscar.scenarios.cluster_lab import dhcp_lease, haoscar_on
from haoscar.scenarios.ha_lab import HOST_STATE_DIR, HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
PRIVATE_ALIAS = "198.18.0.3"
NODE02_MAC = "52:54:00:00:01:02"
BOOT = f"http://{PRIVATE_ALIAS}:8470"


def cluster_lab(where: Path, name: str, **start: Any) -> Any:
    """The demo cluster with a private alias, node02's MAC in the spec, the netboot group (dnsmasq rendered from
    the database, the boot server) and a public ping target (the lab's public client)."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["clients"][0]["macs"] = {"node02": NODE02_MAC}
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = [
        {"name": "dhcp", "kind": "dnsmasq", "interval": 0.5},
        {"name": "boot", "kind": "bootserver", "interval": 0.5},
    ]
    raw["ha"].update(ping_targets=["198.19.0.200"], ping_interval=0.2, ping_failures=3)
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ha_lab(load_spec(path), unique_lab_name(name), where, **start)


@pytest.fixture(scope="class")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    with cluster_lab(tmp_path_factory.mktemp("cfp"), "cfp") as running:
        running.lab.exec("node02", ["ip", "-4", "addr", "flush", "dev", "eth0"])
        yield running


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    """With replication, so a MAC assigned on the active head is in the standby's database."""
    with cluster_lab(tmp_path_factory.mktemp("cf"), "cf", replication=True, replication_ack_timeout_s=1.0) as running:
        running.lab.exec("node02", ["ip", "-4", "addr", "flush", "dev", "eth0"])
        yield running


def events(ha: HaLab, head: str) -> list[dict[str, Any]]:
    path = ha.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/") / "ha" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def roles(ha: HaLab, head: str) -> list[str]:
    return [e["message"] for e in events(ha, head) if e["kind"] == "role"]


def in_sync(ha: HaLab, head: str) -> bool:
    repl = (ha.status(head, timeout=1.0) or {}).get("replication") or {}
    return repl.get("role") == "source" and not repl.get("standby_stale") and bool(repl.get("db_connected"))


def lease_of(ha: HaLab, node: str) -> dict[str, str]:
    """A fresh DHCP lease of ``node`` (its address configured from it): ip, server, siaddr (next-server)."""
    ha.lab.exec(node, ["ip", "-4", "addr", "flush", "dev", "eth0"])
    text = dhcp_lease(ha.lab, node)
    found = re.search(r"lease ip=(\S+) server=(\S+) siaddr=(\S*) boot_file=(\S*) router=(\S*)", text)
    assert found is not None, f"no lease for {node}: {text!r}"
    lease = dict(zip(("ip", "server", "siaddr", "boot_file", "router"), found.groups(), strict=True))
    ha.lab.exec(node, ["ip", "addr", "add", f"{lease['ip']}/24", "dev", "eth0"])
    return lease


def fetch(ha: HaLab, node: str, url: str) -> str:
    code = "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=5).read().decode())"
    out = ha.lab.exec(node, ["python3", "-c", code, url], check=False, timeout=20)
    assert out.returncode == 0, f"{node} could not fetch {url}: {out.stderr}"
    return str(out.stdout)


class TestPublicSide:
    def test_the_standbys_public_link_down_is_only_a_warning(self, public: HaLab) -> None:
        ha = public
        head1, head2 = ha.primary, ha.standby
        before = len(roles(ha, head2)), len(roles(ha, head1))
        ha.lab.exec(head2, ["ip", "link", "set", "eth1", "down"])
        try:
            assert wait_until(lambda: any(e["kind"] == "public.lost" for e in events(ha, head2)), 10)
            warning = next(e for e in events(ha, head2) if e["kind"] == "public.lost")
            assert (
                warning["severity"] == "warning" and "public link eth1 is down on head2 (standby)" in warning["message"]
            )
            time.sleep(2.0)  # ten health rounds: still no role change anywhere
            assert (ha.status(head1) or {})["state"] == "active" and (ha.status(head2) or {})["state"] == "standby"
            assert (len(roles(ha, head2)), len(roles(ha, head1))) == before
        finally:
            ha.lab.exec(head2, ["ip", "link", "set", "eth1", "up"])
        assert wait_until(lambda: any(e["kind"] == "public.lost.ok" for e in events(ha, head2)), 10)

    def test_the_active_heads_public_link_down_moves_the_role(self, public: HaLab) -> None:
        ha = public
        head1, head2 = ha.primary, ha.standby
        ha.lab.exec(head1, ["ip", "link", "set", "eth1", "down"])
        try:
            status = ha.wait_for(head2, "active", 15)
            ha.wait_for(head1, "standby", 15)
        finally:
            ha.lab.exec(head1, ["ip", "link", "set", "eth1", "up"])
        assert status["last_failover"]["cause"] == "public-link-lost"
        assert status["last_failover"]["kind"] == "failover"
        # the compute side moved with it: the private alias answers from head2, and its dnsmasq serves node02
        assert lease_of(ha, "node02") == {
            "ip": "198.18.0.102",
            "server": "198.18.0.2",
            "siaddr": PRIVATE_ALIAS,
            "boot_file": "undionly.kpxe",
            "router": PRIVATE_ALIAS,
        }
        ha.lab.exec("node02", ["ping", "-c", "1", "-W", "2", PRIVATE_ALIAS])
        neighbours = ha.lab.exec("node02", ["ip", "neigh", "show", PRIVATE_ALIAS]).stdout
        head2_mac = ha.lab.exec(head2, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        assert head2_mac in neighbours

    def test_a_ping_target_the_active_head_no_longer_reaches_moves_the_role_back(self, public: HaLab) -> None:
        ha = public
        head1, head2 = ha.primary, ha.standby  # head2 is active since the previous test
        assert wait_until(lambda: any(e["kind"] == "public.lost.ok" for e in events(ha, head1)), 10)
        rules = ha.lab.host_dir(head2) / "srv/drop-target.nft"  # head2's own namespace only
        rules.parent.mkdir(parents=True, exist_ok=True)
        rules.write_text(
            "table inet c3test {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
            "  ip saddr 198.19.0.200 drop\n }\n}\n"
        )
        ha.lab.exec(head2, ["nft", "-f", "/srv/drop-target.nft"])
        try:
            status = ha.wait_for(head1, "active", 15)
            ha.wait_for(head2, "standby", 15)
            lost = [e for e in events(ha, head2) if e["kind"] == "public.lost"]
            assert any("no answer from ping target(s) 198.19.0.200 on head2 (active)" in e["message"] for e in lost)
        finally:
            ha.lab.exec(head2, ["nft", "delete", "table", "inet", "c3test"])
        assert status["last_failover"]["cause"] == "public-link-lost"
        assert lease_of(ha, "node02")["server"] == "198.18.0.1"


def test_after_a_crash_compute_nodes_get_dhcp_ipxe_and_a_fresh_mac_from_the_new_head(ha: HaLab) -> None:
    active, standby = ha.primary, ha.standby
    assert wait_until(lambda: in_sync(ha, active), 60), ha.logs(active)
    # node01 was never known by MAC: assigned on the active head just before the crash
    node01_mac = ha.lab.exec("node01", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    assigned = haoscar_on(ha.lab, active, "mac", "assign", "node01", node01_mac)
    assert assigned.returncode == 0, assigned.stdout + assigned.stderr
    # the running dnsmasq of the active head knows it at once (netboot sync + SIGHUP, no restart)
    assert lease_of(ha, "node01")["ip"] == "198.18.0.101"

    ha.lab.crash(active)
    status = ha.wait_for(standby, "active", 20)
    assert status["last_failover"]["cause"] == "failover"

    node02 = lease_of(ha, "node02")
    assert node02 == {
        "ip": "198.18.0.102",
        "server": "198.18.0.2",
        "siaddr": PRIVATE_ALIAS,
        "boot_file": "undionly.kpxe",
        "router": PRIVATE_ALIAS,
    }
    assert lease_of(ha, "node01")["ip"] == "198.18.0.101"  # the MAC assigned on the dead head, replicated
    ha.lab.exec("node02", ["ping", "-c", "1", "-W", "2", PRIVATE_ALIAS])
    # iPXE's path through the boot server on the private alias: the entry script, then the node's own script
    assert f"chain {BOOT}/boot/${{mac}}.ipxe" in fetch(ha, "node02", f"{BOOT}/boot.ipxe")
    script = fetch(ha, "node02", f"{BOOT}/boot/{NODE02_MAC}.ipxe")
    assert f"kernel {BOOT}/files/oscarimage/vmlinuz" in script and f"haoscar.server={BOOT}" in script
    assert f"haoscar.server={BOOT}" in fetch(ha, "node01", f"{BOOT}/boot/{node01_mac}.ipxe")
