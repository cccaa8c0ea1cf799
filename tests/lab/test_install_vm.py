"""A VM with an empty disk network-boots (qemu's iPXE -> dnsmasq in the head host -> haoscar's boot server),
installs a tiny image and powers off; killed mid-install it shows up as failed with its stage; booted from its own
disk it answers from the head node with its assigned host name and address. Two VMs: a server with an Intel NIC and
a SATA disk (BIOS, the generic kernel), and a UEFI client; the virtio BIOS client with the cloud kernel installs in
tests/lab/test_lab_demo_cluster.py (``demo --install``) and test_demo_cluster_setup.py (the real image)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision import install_progress
from haoscar.provision.installer_build import SCRIPTS_DIR
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.scenarios.install_lab import InstallHead, prepare_head
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.lab_fixtures import MakeLab, pings

pytestmark = [pytest.mark.lab, pytest.mark.vm]

HEAD = "head1"
NODE = "node01"
NODE_IP = "198.18.0.101"
MAC = "52:54:00:5e:00:01"
CACHE = Path("/var/tmp/haoscar-test-cache/installer")
STALL_S = 8.0
INSTALL_TIMEOUT = 180.0


def node_state(state: Path) -> tuple[str, str, str]:
    db = open_database(state, upgrade=False)
    try:
        with db.session() as session:
            node = session.query(Node).filter_by(name=NODE).one()
            return node.install_state, node.install_detail, node.boot_mode
    finally:
        db.close()


@contextlib.contextmanager
def vm_of(head: InstallHead, tmp_path: Path, tap_prefix: str, **options: bool) -> Iterator[Vm]:
    """The head's services running and a VM with an empty disk on the private network; both ended afterwards."""
    tap = head.lab.add_tap("private", f"{tap_prefix}{os.getpid() % 100000}")
    vm = Vm(head.lab.switch_netns, tap, MAC, make_disk(tmp_path / "disk.raw", 256), tmp_path / "serial.log", **options)
    try:
        head.start()
        yield vm
    except BaseException:
        print(f"--- serial log tail ---\n{vm.log_tail(60)}")
        raise
    finally:
        vm.kill()
        head.stop()


def install_over_the_network(head: InstallHead, vm: Vm) -> str:
    """Network boot, install, power off (the image's post-install action); the serial log of it."""
    vm.start("n")
    assert vm.wait(INSTALL_TIMEOUT) is not None, f"no power-off within {INSTALL_TIMEOUT:.0f} s:\n{vm.log_tail()}"
    assert node_state(head.state) == ("installed", "", "localboot"), vm.log_tail()
    return vm.log.read_text(errors="replace")


def installed_files(head: InstallHead, disk: Path, partition: int, paths: list[str]) -> dict[str, str | None]:
    """Files of a powered-off VM's disk (None: missing), read through a loop device over one partition (this
    machine has no udev to make partition nodes), mounted inside the head host."""
    table = subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True, check=True).stdout
    part = json.loads(table)["partitiontable"]["partitions"][partition - 1]
    loop = subprocess.run(
        ["losetup", "-f", "--show", "-o", str(part["start"] * 512), "--sizelimit", str(part["size"] * 512), str(disk)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    device, mount = loop.stdout.strip(), "/run/installed-root"
    try:
        head.lab.exec(HEAD, ["mkdir", "-p", mount])
        head.lab.exec(HEAD, ["mount", "-o", "ro", device, mount])
        found: dict[str, str | None] = {}
        for path in paths:
            read = head.lab.exec(HEAD, ["cat", f"{mount}{path}"], check=False)
            found[path] = read.stdout if read.returncode == 0 else None
        return found
    finally:
        head.lab.exec(HEAD, ["umount", mount], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def boot_from_disk(head: InstallHead, vm: Vm) -> str:
    """Boot from its own disk: its host name and address, answering the head node; the serial log of it."""
    vm.start("c")
    assert vm.wait_for_log(f"tiny image: {NODE} up", 120), f"did not come up from disk:\n{vm.log_tail()}"
    assert f"host={NODE} ip={NODE_IP}" in head.http_get(f"http://{NODE_IP}/")
    return vm.log.read_text(errors="replace")


def kill_mid_install(head: InstallHead, vm: Vm) -> None:
    """Pull the plug mid-install: the head marks the node failed, naming the stage, once it stays silent."""
    vm.start("n")
    deadline = time.monotonic() + INSTALL_TIMEOUT
    killed_in = None
    while time.monotonic() < deadline and killed_in is None:
        progress = install_progress.read_one(head.state, NODE)
        if progress is not None and progress.state == "installing" and progress.stage in ("disk", "image"):
            vm.kill()
            killed_in = progress.stage
        time.sleep(0.1)
    assert killed_in is not None, f"the VM never reached the disk stage:\n{vm.log_tail()}"
    deadline = time.monotonic() + STALL_S + 20
    while time.monotonic() < deadline and node_state(head.state)[0] != "failed":
        time.sleep(0.5)
    install_state, detail, _ = node_state(head.state)
    assert install_state == "failed", (install_state, detail)
    stalled = install_progress.read_one(head.state, NODE)
    assert stalled is not None
    assert detail == f"{stalled.stage}: no progress for {STALL_S:g} s"
    assert stalled.stage in ("disk", "image", "configure")


def test_a_server_with_an_intel_nic_and_a_sata_disk_survives_a_kill_installs_and_boots_from_its_disk(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    # Real hardware's drivers: the installer built from Debian's generic kernel (`netboot build-installer
    # --kernel-package linux-image-amd64`) on a VM with an e1000e NIC and an AHCI disk, none of them virtio.
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    head = prepare_head(
        lab, default_spec(), [(NODE, MAC)], tmp_path, cache_dir=CACHE, kernel_package="linux-image-amd64",
        stall_timeout=STALL_S,
    )  # fmt: skip
    assert head.installer is not None
    assert {"e1000e", "ahci", "igb", "nvme"} <= set(head.installer.modules), head.installer.modules
    with vm_of(head, tmp_path, "hw", hardware=True) as vm:
        # 1. Killed mid-install: failed, with its stage.
        kill_mid_install(head, vm)
        # 2. Reinstalled from scratch: the VM powers off by itself (post-install action "shutdown").
        started = time.monotonic()
        assert "ahci" in install_over_the_network(head, vm)
        print(f"install took {time.monotonic() - started:.1f} s (TCG)")
        monitor = head.haoscar("install", "monitor", "--once", "--json")
        assert monitor.returncode == 0, monitor.stderr
        row = next(r for r in json.loads(monitor.stdout)["nodes"] if r["node"] == NODE)
        assert (row["install_state"], row["stage"], row["percent"]) == ("installed", "done", 100), row
        listed = json.loads(head.haoscar("node", "list", "--json").stdout)
        assert next(n for n in listed if n["name"] == NODE)["install_state"] == "installed"
        assert "exit" in head.http_get(f"{head.server_url}/boot/{MAC}.ipxe").split()
        # 3. From its own disk: its host name and address, answering the head node, the Intel NIC driven by the
        # installed system's kernel.
        serial = boot_from_disk(head, vm)
        assert pings(lab, HEAD, NODE_IP, deadline=10.0), vm.log_tail()
        assert "e1000e" in serial


def test_a_uefi_client_network_boots_through_ipxe_efi_installs_and_boots_from_its_disk(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    # OVMF instead of SeaBIOS: dnsmasq sees client arch 7 and hands out ipxe.efi, which fetches the node's script
    # and boots the installer's kernel as an EFI program; the installer sees UEFI and makes a GPT disk with an EFI
    # system partition that the firmware boots from afterwards.
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    head = prepare_head(lab, default_spec(), [(NODE, MAC)], tmp_path, cache_dir=CACHE)
    with vm_of(head, tmp_path, "ue", uefi=True) as vm:
        serial = install_over_the_network(head, vm)
        assert "EFI v2" in serial, vm.log_tail()  # the installer's kernel started as an EFI program
        served = NetbootPaths.under(head.state).log_file.read_text()
        assert re.search(r"sent \S*/ipxe\.efi to 198\.18\.0\.101", served), [
            line for line in served.splitlines() if re.search("tftp|bootfile|arch|vendor|user class|tags", line)
        ]
        assert not re.search(r"sent \S*/undionly\.kpxe", served)  # the BIOS loader was never transferred
        assert "efi firmware" in serial and "syslinux.efi on the EFI system partition" in serial
        # The installed system mounts the ESP and keeps its kernel copy current across kernel upgrades.
        hook = "/etc/kernel/postinst.d/zz-haoscar-esp"
        files = installed_files(head, vm.disk, 2, ["/etc/fstab", hook, "/etc/initramfs/post-update.d/zz-haoscar-esp"])
        assert "LABEL=HAOSCAR_ESP /boot/efi vfat" in (files["/etc/fstab"] or ""), files
        assert files[hook] == (SCRIPTS_DIR / "esp-kernel-hook.sh").read_text(), files
        # From its own disk, through the firmware: \EFI\BOOT\BOOTX64.EFI (syslinux.efi) on the GPT disk's ESP.
        boot_from_disk(head, vm)
