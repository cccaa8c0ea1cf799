"""A lab head node ready to install VMs over the network: the cluster in its database, MACs assigned, the
installer built, a tiny image stored, dnsmasq and the boot server running. Used by the VM test, ``bench install``
and the demo; the head's state directory is the lab host's own /var/lib/haoscar."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.commands.apply import apply_spec
from haoscar.commands.wiring import open_cluster_database
from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.provision import install_progress
from haoscar.provision.images import ImageStore
from haoscar.provision.installer_build import InstallerBuild, build_installer
from haoscar.provision.installer_kernel import META_PACKAGE, fetch_kernel, resolve_package
from haoscar.provision.netboot_macs import assign_macs
from haoscar.scenarios.tinyimage import build_tiny_tree
from haoscar.spec import ClusterSpec

HEAD_STATE = "/var/lib/haoscar"
BOOT_PORT = 8470


@dataclass
class InstallHead:
    lab: Lab
    head: str
    head_ip: str
    work_dir: Path
    installer: InstallerBuild | None = None
    server: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def state(self) -> Path:
        return self.lab.host_dir(self.head) / HEAD_STATE.lstrip("/")

    @property
    def server_url(self) -> str:
        return f"http://{self.head_ip}:{BOOT_PORT}"

    def haoscar(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "haoscar", "--state-dir", HEAD_STATE, *args]
        return self.lab.exec(self.head, argv, timeout=timeout, check=False)

    def http_get(self, url: str, timeout: float = 30.0) -> str:
        """GET ``url`` from the head host, retried while the other side starts; raises UserError at the end."""
        code = (
            "import sys, time, urllib.request\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            "    try:\n"
            f"        sys.stdout.write(urllib.request.urlopen({url!r}, timeout=2).read().decode()); break\n"
            "    except OSError as exc:\n"
            "        if time.monotonic() > deadline: sys.exit(str(exc))\n"
            "        time.sleep(0.3)\n"
        )
        result = self.lab.exec(self.head, [sys.executable, "-c", code], timeout=timeout + 30, check=False)
        if result.returncode != 0:
            raise UserError(f"no answer from {url} within {timeout:g} s: {result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        """dnsmasq (DHCP + TFTP) and the boot server in the head host."""
        configured = self.haoscar("dhcp", "configure", "--json")
        if configured.returncode != 0:
            raise UserError(f"haoscar dhcp configure failed in {self.head}: {configured.stderr.strip()}")
        log = (self.work_dir / "bootserver.log").open("wb")
        self.server = self.lab.popen(
            self.head,
            [sys.executable, "-m", "haoscar", "--state-dir", HEAD_STATE, "netboot", "serve", "--bind", self.head_ip,
             "--port", str(BOOT_PORT)],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        log.close()
        self.http_get(f"{self.server_url}/boot.ipxe")

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None
        self.haoscar("dhcp", "stop")


def prepare_head(
    lab: Lab,
    spec: ClusterSpec,
    macs: Sequence[tuple[str, str]],
    work_dir: Path,
    *,
    cache_dir: Path,
    head: str = "head1",
    image: str = "oscarimage",
    post_install: str = "shutdown",
    stall_timeout: float | None = None,
    kernel_package: str = META_PACKAGE,
) -> InstallHead:
    """Fill the head's database from ``spec``, assign ``macs`` (node, MAC), build the installer (cached in
    ``cache_dir``) and store the tiny image as ``image``. Call ``start()`` on the result to run the services."""
    state = lab.host_dir(head) / HEAD_STATE.lstrip("/")
    db = open_cluster_database(state)
    try:
        apply_spec(db, spec)
        assign_macs(db, [(node, mac, "install lab") for node, mac in macs])
        if stall_timeout is not None:
            install_progress.set_stall_timeout(db, stall_timeout)
    finally:
        db.close()
    installer = build_installer(state, cache_dir=cache_dir, kernel_package=kernel_package)
    tree = work_dir / f"tiny-{time.monotonic_ns()}"
    build_tiny_tree(fetch_kernel(resolve_package(kernel_package), cache_dir), tree)
    ImageStore(state).import_tree(image, tree, post_install=post_install)
    head_ip = next(i.ip for i in lab.host(head).interfaces if i.network == "private" and i.ip)
    return InstallHead(lab, head, str(head_ip), work_dir, installer)
