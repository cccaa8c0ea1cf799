"""The HA dnsmasq resource's config: the database's (one renderer with ``netboot sync``), for the head's private
side, with assigned MACs and the private alias as next-server; and dnsmasq itself accepts it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.events import EventBus
from haoscar.ha.resources import ResourceError, ResourceGroup
from haoscar.ha.services.netboot_render import main as render_main
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_macs
from haoscar.spec.loader import check_text
from haoscar.spec.models import ClusterSpec

LAB = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"


def lab_spec(**ha: object) -> ClusterSpec:
    """The demo cluster, with node02's MAC known (as after OSCAR's Collect MAC Address) and a private alias."""
    raw = yaml.safe_load(LAB.read_text())
    raw["clients"][0]["macs"] = {"node02": "52:54:00:12:34:02"}
    for head in raw["heads"].values():
        head["private_alias_ip"] = "198.18.0.3"
    raw["ha"].update(ha)
    return ClusterSpec.model_validate(raw)


def applied(state: Path) -> Path:
    """A head's state directory holding the applied spec, and node01's MAC assigned later (``mac assign``)."""
    db = open_database(state)
    apply_spec(db, lab_spec())
    assign_macs(db, [("node01", "52:54:00:12:34:01", "test")])
    db.close()
    return state


def test_config_is_rendered_from_the_database_for_the_heads_private_side(tmp_path: Path) -> None:
    state = applied(tmp_path)
    assert render_main([str(state), "eth7"]) == 0
    paths = NetbootPaths.under(state)
    conf = paths.conf.read_text().splitlines()
    assert "interface=eth7" in conf and "port=0" in conf and "dhcp-authoritative" in conf
    assert f"pid-file={paths.pid_file}" in conf
    # next-server and the iPXE URL are the private alias, which follows the active head
    assert "dhcp-boot=tag:known,tag:!ipxe,tag:!efi64,undionly.kpxe,,198.18.0.3" in conf
    assert "dhcp-boot=tag:known,tag:ipxe,http://198.18.0.3:8470/boot.ipxe" in conf
    assert "dhcp-option=option:router,198.18.0.3" in conf  # no private gateway: the alias, not this head's own IP
    # the MAC from the spec and the one assigned in the database later both get their fixed address
    assert paths.host_file("node02").read_text() == "52:54:00:12:34:02,198.18.0.102,node02\n"
    assert paths.host_file("node01").read_text() == "52:54:00:12:34:01,198.18.0.101,node01\n"
    assert "http://198.18.0.3:8470/files/oscarimage/vmlinuz" in paths.ipxe_file("node01").read_text()


def test_without_a_database_the_render_step_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main([str(tmp_path), "eth0"]) == 2
    assert "no cluster database" in capsys.readouterr().err
    assert not (tmp_path / "haoscar.db").exists()


def test_dnsmasq_accepts_the_config(tmp_path: Path) -> None:
    state = applied(tmp_path)
    assert render_main([str(state), "eth0"]) == 0
    out = subprocess.run(
        ["/usr/sbin/dnsmasq", "--test", f"--conf-file={NetbootPaths.under(state).conf}"],
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


def test_the_warm_renderer_renders_once_per_line_and_ends_at_eof(tmp_path: Path) -> None:
    state = applied(tmp_path)
    argv = [sys.executable, "-m", "haoscar.ha.services.netboot_render", "--warm", str(state)]
    done = subprocess.run(argv, input="eth3\n", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    ready, answer = (json.loads(line) for line in done.stdout.splitlines())
    assert ready == {"ready": True} and answer["ok"] is True
    assert "interface=eth3" in NetbootPaths.under(state).conf.read_text().splitlines()
