"""``haoscar demo --install``'s act: after a crash of the active head, a compute node that was never installed
network-boots and installs from the **new** active head (issue 11).

The demo lab gets the private alias and the netboot group (dnsmasq rendered from the database, the boot server) as
HA services, with replication: the tiny image imported on the active head reaches the standby's image store, and
the node's MAC, assigned on the active head just before the crash, reaches the standby's database. Each head builds
its own installer (``STATE/netboot/boot`` is not replicated). Then the active head crashes, a qemu VM takes the
first compute client's place (its namespace stand-in is crashed) and iPXE -> the new head's dnsmasq -> the boot
server on the private alias -> the image -> installed -> it boots from its own disk and answers the new head.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.provision.images import ImageStore
from haoscar.provision.installer_build import build_installer
from haoscar.provision.installer_kernel import META_PACKAGE, fetch_kernel, resolve_package
from haoscar.scenarios.cluster_lab import haoscar_on
from haoscar.scenarios.demo_cluster import in_sync, rejoin, restore_crashed, start_session
from haoscar.scenarios.ha_lab import HOST_STATE_DIR, HaLab, wait_until
from haoscar.scenarios.install_lab import InstallHead
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.tinyimage import build_tiny_tree
from haoscar.spec import ClusterSpec, all_nodes

PRIVATE_ALIAS = "198.18.0.3"
IMAGE = "oscarimage"
# (console, the new head's state directory, node, vm) -> the node's final install state; demo._watch_install
Watch = Callable[[Any, Path, str, Any], str]


def install_spec(spec: ClusterSpec) -> ClusterSpec:
    raw = spec.model_dump(mode="json", exclude_none=True)
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = [
        {"name": "dhcp", "kind": "dnsmasq", "interval": 0.5},
        {"name": "boot", "kind": "bootserver", "interval": 0.5},
    ]
    return ClusterSpec.model_validate(raw)


def _state(lab: Lab, head: str) -> Path:
    return lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")


def _set_up(ha: HaLab, active: str, node: str, mac: str, *, work: Path, cache_dir: Path) -> None:
    """The image on the active head (replicated), the installer on both, the node's MAC assigned on the active."""
    standby = ha.standby if active == ha.primary else ha.primary
    tree = work / "tiny"
    build_tiny_tree(fetch_kernel(resolve_package(META_PACKAGE), cache_dir), tree)
    ImageStore(_state(ha.lab, active)).import_tree(IMAGE, tree, post_install="shutdown")
    for head in (active, standby):
        build_installer(_state(ha.lab, head), cache_dir=cache_dir)
    if not wait_until(lambda: IMAGE in {i.name for i in ImageStore(_state(ha.lab, standby)).list()}, 60):
        raise RuntimeError(f"the image did not reach {standby}'s image store within 60 s")
    assigned = haoscar_on(ha.lab, active, "mac", "assign", node, mac)
    if assigned.returncode != 0:
        raise RuntimeError(f"mac assign on {active} failed: {assigned.stdout}{assigned.stderr}")
    if not wait_until(lambda: in_sync(ha, active), 60, 0.1):
        raise RuntimeError(f"{standby} was not in sync with {active} within 60 s")


def _boot_mode(state: Path, node: str) -> str:
    """The node's boot mode in that head's database: ``localboot`` once installed (the head's iPXE script then
    sends it to its own disk)."""
    from haoscar.commands.wiring import open_cluster_database
    from haoscar.db.models import Node

    db = open_cluster_database(state, upgrade=False)
    try:
        with db.session() as session:
            return str(session.query(Node).filter_by(name=node).one().boot_mode)
    finally:
        db.close()


def _install(ha: HaLab, console: Any, node: str, *, ip: str, mac: str, work: Path, watch: Watch) -> dict[str, Any]:
    new_head = ha.standby if ha.lab.host(ha.primary).state == "crashed" else ha.primary
    tap = ha.lab.add_tap("private", f"dm{os.getpid() % 100000}")
    vm = Vm(ha.lab.switch_netns, tap, mac, make_disk(work / "disk.raw", 256), work / "serial.log")
    try:
        started = time.monotonic()
        vm.start("n")
        state = watch(console, _state(ha.lab, new_head), node, vm)
        took = time.monotonic() - started
        boot_mode = _boot_mode(_state(ha.lab, new_head), node)  # what the new head's iPXE script does next
        # the installer's kernel command line names its head; read before the next boot rewrites the serial log
        from_new_head = f"haoscar.server=http://{PRIVATE_ALIAS}:8470" in vm.log.read_text(errors="replace")
        came_up = False
        if state == "installed":
            vm.start("c")
            came_up = vm.wait_for_log(f"tiny image: {node} up", 120)
        answered = came_up and ha.lab.exec(new_head, ["ping", "-c", "1", "-W", "5", ip], check=False).returncode == 0
        marker = ""
        if answered:
            head_ip = str(ha.lab.host(new_head).address_on("private"))
            try:
                marker = InstallHead(ha.lab, new_head, head_ip, work).http_get(f"http://{ip}/", timeout=15)
            except UserError as exc:
                marker = str(exc)
        seen = {"state": state, "took_s": took, "answered": answered, "marker": marker, "via_alias": from_new_head}
        return {**seen, "boot_mode": boot_mode}
    finally:
        vm.kill()


def run_install_after_crash(
    lab: Lab, spec: ClusterSpec, console: Any, *, cache_dir: Path, mac: str, watch: Watch
) -> dict[str, Any]:
    """What the act observed: the node's state, how long it took, whether it answered, its marker, the heads."""
    cluster = install_spec(spec)
    node = next(n for n in all_nodes(cluster) if n.role == "compute")
    ip = str(next(i.ip for i in node.interfaces if i.network == "private"))
    if node.name in lab.hosts and lab.host(node.name).state != "crashed":
        lab.crash(node.name)  # the VM answers for this client's name and address from now on
    work = Path(tempfile.mkdtemp(prefix="hdi", dir="/tmp"))
    ha: HaLab | None = None
    try:
        ha, active, standby = start_session(lab, cluster)
        console.print(f"Image and installer on {active}, replicated to {standby}; {node.name}'s MAC assigned")
        _set_up(ha, active, node.name, mac, work=work, cache_dir=cache_dir)
        console.print(f"[bold]Crashing the active head {active}[/]; {node.name} then boots from the network")
        lab.crash(active)
        ha.wait_for(standby, "active", 20)
        time.sleep(0.5)
        seen = _install(ha, console, node.name, ip=ip, mac=mac, work=work, watch=watch)
        rejoin(ha, active, standby)
        return {**seen, "old": active, "new": standby, "alias": PRIVATE_ALIAS}
    finally:
        if ha is not None:
            ha.stop()
        restore_crashed(lab, cluster)
        shutil.rmtree(work, ignore_errors=True)
