"""A qemu VM on a lab network, for the install test, the demo and ``bench install``.

qemu runs with TCG (KVM is not available on these machines) inside the lab's switch namespace, where its tap
device is on the network's bridge; its NIC is virtio (qemu's own iPXE ROM network-boots it) and its disk a raw
file. ``hardware=True`` gives it what a real server has instead: an Intel e1000e NIC (82574L) and a SATA disk on an
AHCI controller, which the generic Debian kernel drives (the cloud kernel does not). ``uefi=True`` boots it with
OVMF (Debian's ``ovmf``) instead of SeaBIOS, so it network-boots as a UEFI client (client arch 7). The serial
console goes to a log file that tells what the VM did. The VM is stopped by pid, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.errors import UserError
from haoscar.lab.names import NETNS_DIR

OVMF = Path("/usr/share/ovmf/OVMF.fd")  # Debian's ovmf: UEFI firmware for x86_64 VMs


@dataclass
class Vm:
    """One qemu process: ``boot`` is ``n`` (network) or ``c`` (its disk)."""

    switch_netns: str
    tap: str
    mac: str
    disk: Path
    log: Path
    memory_mb: int = 384
    hardware: bool = False  # e1000e + AHCI instead of virtio
    uefi: bool = False  # OVMF firmware instead of SeaBIOS
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def argv(self, boot: str) -> list[str]:
        return [
            "nsenter",
            f"--net={NETNS_DIR}/{self.switch_netns}",
            "qemu-system-x86_64",
            "-m",
            str(self.memory_mb),
            "-nographic",
            "-no-reboot",  # a reboot ends qemu: the caller decides how the VM boots next
            "-monitor",
            "none",
            "-serial",
            f"file:{self.log}",
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            *self._devices(boot),
            *(["-bios", str(OVMF)] if self.uefi else []),
            "-boot",
            boot,
        ]

    def _devices(self, boot: str) -> list[str]:
        if self.uefi:
            # OVMF follows bootindex; the NIC gets no option ROM (qemu's ROMs are iPXE already), so the firmware's
            # own PXE client boots, as on a real UEFI server, and is handed ipxe.efi.
            net, disk = (1, 2) if boot == "n" else (2, 1)
            return [
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile=,bootindex={net}",
                "-drive", f"file={self.disk},format=raw,if=none,id=d0",
                "-device", f"virtio-blk-pci,drive=d0,bootindex={disk}",
            ]  # fmt: skip
        if not self.hardware:
            return [
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
                "-drive", f"file={self.disk},format=raw,if=virtio",
            ]  # fmt: skip
        return [
            "-device", f"e1000e,netdev=n0,mac={self.mac}",
            "-drive", f"file={self.disk},format=raw,if=none,id=d0",
            "-device", "ahci,id=sata",
            "-device", "ide-hd,drive=d0,bus=sata.0,bootindex=1",
        ]  # fmt: skip

    def start(self, boot: str) -> int:
        if self.proc is not None and self.proc.poll() is None:
            raise UserError(f"the VM on {self.tap} is already running (pid {self.proc.pid})")
        self.log.write_bytes(b"")
        # nsenter execs qemu in place, so this pid is qemu's own.
        self.proc = subprocess.Popen(
            self.argv(boot), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """qemu's exit status, or None if it is still running after ``timeout`` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Pull the plug: SIGKILL by pid, then reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.proc.poll() is None:
            return ""
        with contextlib.suppress(ValueError, OSError):
            return self.proc.stderr.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no serial log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_log(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if marker in self.log.read_text(errors="replace"):
                    return True
            if not self.running():
                return False
            time.sleep(0.5)
        return False


def make_disk(path: Path, size_mb: int) -> Path:
    """An empty raw disk (sparse: costs nothing until written)."""
    with path.open("wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    return path
