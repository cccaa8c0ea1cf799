"""The lab DHCP config: what dnsmasq is told, and that dnsmasq itself accepts it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from haoscar.events import EventBus
from haoscar.ha.resources import ResourceError, ResourceGroup
from haoscar.ha.services.dnsmasq import DhcpPaths, render_lab_dhcp_config
from haoscar.spec.loader import check_text
from haoscar.spec.models import ClusterSpec

LAB = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"


def lab_spec(**ha: object) -> ClusterSpec:
    """The demo cluster, with node02's MAC known (as after OSCAR's Collect MAC Address)."""
    raw = yaml.safe_load(LAB.read_text())
    raw["clients"][0]["macs"] = {"node02": "52:54:00:12:34:02"}
    raw["ha"].update(ha)
    return ClusterSpec.model_validate(raw)


def test_config_serves_the_private_side_of_the_head(tmp_path: Path) -> None:
    spec = lab_spec()
    text = render_lab_dhcp_config(spec, spec.heads.standby, DhcpPaths.under(tmp_path), run_as=("nobody", "nogroup"))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "port=0",
        "interface=eth0",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "dhcp-authoritative",
        f"dhcp-leasefile={tmp_path}/dnsmasq.leases",
        f"pid-file={tmp_path}/dnsmasq.pid",
        "user=nobody",
        "group=nogroup",
        "domain=lab.haoscar",
        f"log-facility={tmp_path}/dnsmasq.log",
        "log-dhcp",
        "dhcp-range=set:group0,198.18.0.101,198.18.0.102,255.255.255.0,2m",
        "dhcp-host=52:54:00:12:34:02,198.18.0.102,node02,2m",
    ]


def test_dnsmasq_accepts_the_config(tmp_path: Path) -> None:
    spec = lab_spec()
    paths = DhcpPaths.under(tmp_path)
    paths.config.write_text(render_lab_dhcp_config(spec, spec.heads.primary, paths))
    out = subprocess.run(
        ["/usr/sbin/dnsmasq", "--test", f"--conf-file={paths.config}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "syntax check OK" in out.stderr


def test_a_node_that_is_no_head_cannot_serve_dhcp(tmp_path: Path) -> None:
    spec = lab_spec(services=[{"name": "dhcp", "kind": "dnsmasq"}])
    group = ResourceGroup.from_spec(spec, "node01", tmp_path, EventBus("node01"))
    with pytest.raises(ResourceError, match="node01 is not a head of the spec"):
        asyncio.run(group.start())


def test_spec_problems_of_the_resource_group_name_the_line() -> None:
    raw = yaml.safe_load(LAB.read_text())
    raw["ha"]["services"] = [
        {"name": "dhcp", "kind": "dnsmasq"},
        {"name": "dhcp2", "kind": "dnsmasq"},
        {"name": "api", "kind": "status-api", "port": 7404},
    ]
    raw["ha"]["alerts"] = [{"email": "ops@lab.haoscar"}]
    spec, problems = check_text(yaml.safe_dump(raw, sort_keys=False))
    assert spec is None
    found = {(p.path, p.message) for p in problems}
    assert ("ha.services[1].kind", "a second dnsmasq service; a head runs one (the first is 0)") in found
    assert (
        "ha.services[2].port",
        "port 7404 is already ha.port (heartbeats); the status API needs a port of its own, e.g. 7406",
    ) in found
    assert any(p.path.startswith("ha.alerts[0]") and "needs smtp_server" in p.message for p in problems)
    assert all(p.line > 0 for p in problems)
