"""A compute node installed from the real Debian image (``image build``, debootstrap) into a qemu VM, in a lab.

The lab brings the heads (one or two) with the netboot services running on the compute-facing address (the HA
``dnsmasq`` and ``bootserver`` kinds, or ``install_lab.InstallHead``); ``install_real_node`` then stores the built
image on the active head, assigns the node's MAC, network-installs the VM (qemu with TCG, SeaBIOS, virtio), boots
it from its disk and waits until root's sshd takes haoscar's cluster key. The result is a handle to run commands
on the node over ssh from a lab host, as an administrator does from a head.

One VM per test module at most: under TCG an install of the real image and its first boot take minutes
(``install_s`` and ``boot_s`` say how long they took; docs/install.md "Joining the cluster").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.provision.image_build import BASE_PACKAGES
from haoscar.provision.images import ImageStore
from haoscar.provision.installer_build import build_installer
from haoscar.provision.sshkeys import ensure_identity
from haoscar.scenarios.cluster_lab import HOST_STATE_DIR, haoscar_on
from haoscar.scenarios.install_vm import Vm, make_disk

CACHE = Path("/var/tmp/haoscar-test-cache")
SUITE = "bookworm"
IMAGE = "oscarimage"
CLUSTER_KEY = f"{HOST_STATE_DIR}/ssh/id_ed25519"  # the head's key (provision/sshkeys.ensure_identity)
MEMORY_MB = 768  # slurmd, munged, sshd, timesyncd and an MPI hello fit; the installer unpacks to disk, not RAM
# Two vCPUs with multi-threaded TCG: the installer's tar and its sha256sum of the stream (the slowest part under
# emulation) run side by side, and the first boot starts its services in parallel.
CPUS = 2
DISK_MB = 3072  # sparse: costs what the image writes


def built_image_state(cache: Path = CACHE, suite: str = SUITE) -> Path:
    """A state directory holding image ``oscarimage`` made by ``haoscar image build`` with the default package
    list (``image_build.BASE_PACKAGES``), built once per suite and list under ``cache`` (the same key as
    tests/lab/test_image_build.py, so either builds it for the other). A failed build caches nothing."""
    key = hashlib.sha256(json.dumps([suite, *BASE_PACKAGES]).encode()).hexdigest()[:12]
    cache.mkdir(parents=True, exist_ok=True)
    state = cache / f"build-{suite}-{key}"
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build once
        if not (state / "images" / IMAGE / "current").exists():
            work = cache / f".building-{key}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            argv = [sys.executable, "-m", "haoscar", "--state-dir", str(work), "image", "build", IMAGE]
            argv += ["--suite", suite, "--post-install", "reboot", "--json"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False)
            if done.returncode != 0:
                shutil.rmtree(work, ignore_errors=True)
                raise UserError(f"image build failed: {done.stderr.strip()[-2000:]}")
            shutil.rmtree(state, ignore_errors=True)
            os.rename(work, state)
    return state


def built_image_root(cache: Path = CACHE) -> Path:
    return ImageStore(built_image_state(cache)).current_root(IMAGE)


@dataclass
class RealVm(Vm):
    cpus: int = CPUS

    def argv(self, boot: str) -> list[str]:
        return [*super().argv(boot), "-smp", str(self.cpus), "-accel", "tcg,thread=multi"]


@dataclass
class RealNode:
    """The installed VM: ``ssh`` runs a command on it as root from a lab host (by default the head that installed
    it) with that head's cluster key, never prompting."""

    lab: Lab
    head: str
    name: str
    ip: str
    vm: Vm
    install_s: float
    boot_s: float

    def ssh(self, command: str, *, via: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", "/dev/null", "-i", CLUSTER_KEY, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        argv += [f"root@{self.ip}", command]
        return self.lab.exec(via or self.head, argv, check=False, timeout=timeout)

    def wait_ssh(self, timeout: float, *, via: str | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ssh("true", via=via, timeout=30).returncode == 0:
                return True
            if not self.vm.running():
                return False
            time.sleep(2)
        return False

    def stop(self) -> None:
        """Pull the plug (the VM's disk stays for a later boot with ``boot_again``)."""
        self.vm.kill()

    def boot_again(self, timeout: float = 300.0) -> float:
        """Boot the node from its disk again; seconds until its sshd took the cluster key."""
        self.vm.kill()
        started = time.monotonic()
        self.vm.start("c")
        if not self.wait_ssh(timeout):
            raise UserError(f"{self.name} did not answer ssh within {timeout:g} s:\n{self.vm.log_tail()}")
        return time.monotonic() - started


def prepare_head(lab: Lab, head: str, image_root: Path, *, installer_cache: Path = CACHE / "installer") -> None:
    """What the head needs to install the real image: its cluster key, its installer (each head builds its own:
    the netboot tree is not replicated) and the image in its store (post-install ``shutdown``: the VM powers off
    when installed, and the harness boots it from disk)."""
    state = lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")
    ensure_identity(state)
    build_installer(state, cache_dir=installer_cache)
    store = ImageStore(state)
    if IMAGE not in {image.name for image in store.list()}:
        store.import_tree(IMAGE, image_root, post_install="shutdown")


def install_real_node(
    lab: Lab,
    head: str,
    *,
    node: str,
    ip: str,
    mac: str,
    work_dir: Path,
    install_timeout: float = 900.0,
    boot_timeout: float = 400.0,
) -> RealNode:
    """Network-install ``node`` (MAC ``mac``, address ``ip`` in the database) from ``head``, the head whose
    netboot services answer now, with the image ``prepare_head`` stored; boot it from its disk; return once root
    takes the cluster key over ssh. The VM is killed if anything fails on the way."""
    assigned = haoscar_on(lab, head, "mac", "assign", node, mac)
    if assigned.returncode != 0:
        raise UserError(f"mac assign {node} {mac} on {head}: {assigned.stdout}{assigned.stderr}")
    tap = lab.add_tap("private", f"rn{os.getpid() % 100000}")
    disk = make_disk(work_dir / f"{node}.raw", DISK_MB)
    vm = RealVm(lab.switch_netns, tap, mac, disk, work_dir / f"{node}.serial", memory_mb=MEMORY_MB)
    try:
        started = time.monotonic()
        vm.start("n")
        if vm.wait(install_timeout) is None:
            raise UserError(f"{node} did not finish installing within {install_timeout:g} s:\n{vm.log_tail()}")
        if "installed " + node not in vm.log.read_text(errors="replace"):
            raise UserError(f"{node}'s installer stopped without installing:\n{vm.log_tail()}")
        install_s = time.monotonic() - started
        started = time.monotonic()
        vm.start("c")
        real = RealNode(lab, head, node, ip, vm, install_s, 0.0)
        if not real.wait_ssh(boot_timeout):
            raise UserError(f"{node} did not answer ssh within {boot_timeout:g} s:\n{vm.log_tail()}")
        real.boot_s = time.monotonic() - started
        return real
    except BaseException:
        vm.kill()
        raise
