"""A tiny bootable image for the VM test, the demo and ``bench install``: busybox, the installer's kernel and a
small initramfs, and an init that takes the identity the installer wrote and serves a marker page over HTTP.

About 18 MB instead of a Debian tree's 200+: a TCG VM installs it in well under a minute, yet it goes through
every stage a real image does (partition, mkfs, image stream, per-node files, extlinux, boot from disk).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from haoscar.provision.installer_build import SCRIPTS_DIR, busybox_entries, initramfs
from haoscar.provision.installer_cpio import write_initramfs
from haoscar.provision.installer_kernel import KernelTree, plan_modules

# Virtio for VMs; e1000e and AHCI for the "real hardware" VM (absent from the cloud kernel, then skipped).
TINY_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "sd_mod", "crc32c_generic", "ext4", "e1000e", "ahci",
)  # fmt: skip


def build_tiny_tree(kernel: KernelTree, root: Path) -> Path:
    """Write the tiny image's root tree to ``root`` (created, must not exist yet)."""
    root.mkdir(parents=True)
    for directory in ("proc", "sys", "dev", "tmp", "run", "etc/haoscar", "srv/www", "boot", "newroot", "root"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for entry in busybox_entries():
        target = root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.path == "bin/busybox":
            target.write_bytes(entry.data)
            target.chmod(0o755)
        else:
            os.symlink(entry.data.decode(), target)
    init = root / "sbin" / "init"
    init.unlink(missing_ok=True)  # busybox's init applet link: this image has its own
    shutil.copyfile(SCRIPTS_DIR / "tiny-init.sh", init)
    init.chmod(0o755)
    shutil.copyfile(SCRIPTS_DIR / "udhcpc.sh", root / "etc" / "udhcpc.script")
    (root / "etc" / "udhcpc.script").chmod(0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    shutil.copyfile(kernel.vmlinuz, root / "boot" / f"vmlinuz-{kernel.release}")
    plan = plan_modules(kernel.modules_dir, TINY_MODULES)
    entries = initramfs(kernel, plan, (SCRIPTS_DIR / "tiny-initrd-init.sh").read_bytes())
    write_initramfs(root / "boot" / f"initrd.img-{kernel.release}", entries)
    return root
