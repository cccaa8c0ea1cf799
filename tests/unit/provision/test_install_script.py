"""The install script's helpers, run by busybox sh as in the initramfs (sourced with HAOSCAR_LIB=1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from haoscar.provision.installer_build import SCRIPTS_DIR


def sh(snippet: str, **env: str) -> str:
    script = f'HAOSCAR_LIB=1 . "{SCRIPTS_DIR / "install.sh"}"\n{snippet}'
    result = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reasons_are_form_encoded_for_the_head() -> None:
    assert sh('urlenc "disk too small: 50% & more=1+1 #?\nx"') == "disk+too+small:+50%25+%26+more%3D1%2B1+%23%3F+x"


def test_kernel_arguments_partitions_and_sizes(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("initrd=initrd.img console=ttyS0 haoscar.server=http://198.18.0.1:8470 haoscar.disk=/dev/sdb\n")
    out = sh(
        "arg haoscar.server; arg haoscar.disk; arg haoscar.none || echo absent; "
        "partition_of /dev/vda; partition_of /dev/nvme0n1; needed_bytes 104857600",
        HAOSCAR_CMDLINE=str(cmdline),
    )
    assert out.split() == [
        "http://198.18.0.1:8470",
        "/dev/sdb",
        "absent",
        "/dev/vda1",
        "/dev/nvme0n1p1",
        str(104857600 + 104857600 // 5 + 64 * 1048576),
    ]
    disk = tmp_path / "disk.img"
    with disk.open("wb") as handle:
        handle.truncate(32 << 20)
    assert sh(f"disk_bytes {disk}").strip() == str(32 << 20)
