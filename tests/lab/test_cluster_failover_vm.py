"""After a crash of the active head, a compute node that was never installed network-boots and installs from the
new active head (issue 11, "Must show"): qemu's iPXE -> the new head's dnsmasq (rendered from its replicated
database, which holds the MAC assigned on the old head just before the crash) -> the boot server on the private
alias -> the image from the replicated image store -> installed -> boots from its disk and answers the new head."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.provision.images import ImageStore
from haoscar.provision.installer_build import build_installer
from haoscar.provision.installer_kernel import META_PACKAGE, fetch_kernel, resolve_package
from haoscar.scenarios.cluster_lab import haoscar_on
from haoscar.scenarios.ha_lab import HOST_STATE_DIR, HaLab, ha_lab, wait_until
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.scenarios.tinyimage import build_tiny_tree
from haoscar.spec import load_spec

pytestmark = [pytest.mark.lab, pytest.mark.vm]

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
PRIVATE_ALIAS = "198.18.0.3"
NODE, NODE_IP, MAC = "node01", "198.18.0.101", "52:54:00:5e:0c:01"
CACHE = Path("/var/tmp/haoscar-test-cache/installer")
INSTALL_TIMEOUT = 240.0


def state_of(ha: HaLab, head: str) -> Path:
    return ha.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")


def node_state(state: Path) -> tuple[str, str]:
    db = open_database(state, upgrade=False)
    try:
        with db.session() as session:
            node = session.query(Node).filter_by(name=NODE).one()
            return node.install_state, node.boot_mode
    finally:
        db.close()


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    raw = yaml.safe_load(LAB_YAML.read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["images"][1]["post_install"] = "shutdown"  # the VM powers off when installed
    raw["ha"]["services"] = [{"name": "dhcp", "kind": "dnsmasq"}, {"name": "boot", "kind": "bootserver"}]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    with ha_lab(load_spec(path), unique_lab_name("cfv"), tmp_path, replication=True) as running:
        # node01 is played by the VM: the namespace host of that name leaves the private network
        running.lab.exec(NODE, ["ip", "link", "set", "eth0", "down"])
        yield running


def test_a_never_installed_node_installs_from_the_new_head_after_a_crash(ha: HaLab, tmp_path: Path) -> None:
    head1, head2 = ha.primary, ha.standby
    # Set-up on the active head: the tiny image in its store (replicated to the standby's), and the installer,
    # which each head builds for itself (STATE/netboot/boot is not a replicated tree).
    tree = tmp_path / "tiny"
    build_tiny_tree(fetch_kernel(resolve_package(META_PACKAGE), CACHE), tree)
    ImageStore(state_of(ha, head1)).import_tree("oscarimage", tree, post_install="shutdown")
    for head in (head1, head2):
        build_installer(state_of(ha, head), cache_dir=CACHE)
    assert wait_until(lambda: "oscarimage" in {i.name for i in ImageStore(state_of(ha, head2)).list()}, 60)
    # the node's MAC, assigned on the active head just before the crash
    assigned = haoscar_on(ha.lab, head1, "mac", "assign", NODE, MAC)
    assert assigned.returncode == 0, assigned.stdout + assigned.stderr

    ha.lab.crash(head1)
    ha.wait_for(head2, "active", 20)
    time.sleep(0.5)

    tap = ha.lab.add_tap("private", f"cv{os.getpid() % 100000}")
    vm = Vm(ha.lab.switch_netns, tap, MAC, make_disk(tmp_path / "disk.raw", 256), tmp_path / "serial.log")
    try:
        vm.start("n")
        assert vm.wait(INSTALL_TIMEOUT) is not None, f"no power-off within {INSTALL_TIMEOUT:.0f} s:\n{vm.log_tail()}"
        serial = vm.log.read_text(errors="replace")
        assert f"haoscar.server=http://{PRIVATE_ALIAS}:8470" in serial, vm.log_tail()  # the installer's head
        assert node_state(state_of(ha, head2)) == ("installed", "localboot"), vm.log_tail()
        vm.start("c")
        assert vm.wait_for_log(f"tiny image: {NODE} up", 120), f"did not come up from disk:\n{vm.log_tail()}"
        assert pings(ha.lab, head2, NODE_IP, deadline=10.0), vm.log_tail()
    except BaseException:
        print(f"--- serial log tail ---\n{vm.log_tail(60)}\n{ha.logs(head2)}")
        raise
    finally:
        vm.kill()
