"""The resource group under the HA daemon: a compute client gets DHCP from whichever head is active; a service
killed once is restarted in place (no failover), killed again within its window it makes the head fail over."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.scenarios.owner_sampler import OwnerSampler
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
NODE02_MAC = "52:54:00:00:01:02"
UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "lease ip=$ip server=$serverid"
exit 0
"""


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("hd")
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["clients"][0]["macs"] = {"node02": NODE02_MAC}
    raw["ha"]["services"] = [
        {"name": "dhcp", "kind": "dnsmasq", "interval": 0.2, "max_restarts": 1, "restart_window": 30},
        {"name": "api", "kind": "status-api"},
    ]
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    with ha_lab(load_spec(path), unique_lab_name("hd"), where) as running:
        running.lab.exec("node02", ["ip", "-4", "addr", "flush", "dev", "eth0"])
        yield running


def _lease(ha: HaLab) -> str:
    script = ha.lab.host_dir("node02") / "srv/udhcpc.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", "/srv/udhcpc.sh"]
    return ha.lab.exec("node02", argv, check=False, timeout=30).stdout


def _dhcp(ha: HaLab, head: str) -> dict[str, object]:
    status = ha.status(head) or {}
    return next((r for r in status.get("resources", []) if r["name"] == "dhcp"), {})


def test_dhcp_follows_the_active_head_and_a_flapping_service_fails_over(ha: HaLab) -> None:
    private = {ha.primary: "198.18.0.1", ha.standby: "198.18.0.2"}
    assert f"lease ip=198.18.0.102 server={private[ha.primary]}" in _lease(ha)

    # killed once: restarted in place, no failover
    pid = _dhcp(ha, ha.primary)["pid"]
    ha.lab.exec(ha.primary, ["kill", "-9", str(pid)])
    assert wait_until(lambda: _dhcp(ha, ha.primary).get("total_restarts") == 1, 10)
    assert wait_until(lambda: _dhcp(ha, ha.primary).get("state") == "running", 10)
    assert (ha.status(ha.primary) or {})["state"] == "active"

    # killed again within the window: the head gives up the role, the standby serves
    with OwnerSampler(ha) as sampler:
        pid = _dhcp(ha, ha.primary)["pid"]
        ha.lab.exec(ha.primary, ["kill", "-9", str(pid)])
        ha.wait_for(ha.standby, "active", 15)
        ha.wait_for(ha.primary, "standby", 15)
    assert sampler.max_owners() == 1
    assert f"lease ip=198.18.0.102 server={private[ha.standby]}" in _lease(ha)

    # the active head (now head2) crashes: the compute client renews from head1
    ha.lab.crash(ha.standby)
    ha.wait_for(ha.primary, "active", 15)
    time.sleep(0.2)
    assert f"lease ip=198.18.0.102 server={private[ha.primary]}" in _lease(ha)
