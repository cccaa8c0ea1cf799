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


def test_firmware_choice_and_the_esp_in_the_size_check(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 haoscar.firmware=efi\n")
    out = sh("firmware; FIRMWARE=efi; needed_bytes 0; partition_of /dev/vda 2", HAOSCAR_CMDLINE=str(cmdline))
    assert out.split() == ["efi", str(64 * 1048576 + 100 * 1048576), "/dev/vda2"]
    assert sh("firmware", HAOSCAR_FIRMWARE="bios", HAOSCAR_CMDLINE=str(cmdline)).strip() == "bios"


def test_the_kernel_hook_keeps_the_esp_copy_of_the_newest_kernel(tmp_path: Path) -> None:
    # A UEFI node after `apt upgrade`: a newer kernel and initramfs in /boot; syslinux.efi boots the ESP's copies.
    boot = tmp_path / "boot"
    esp = boot / "efi/EFI/BOOT"
    esp.mkdir(parents=True)
    (esp / "vmlinuz").write_text("6.1.0-9 kernel")
    (esp / "syslinux.cfg").write_text("LABEL haoscar\n    LINUX vmlinuz\n    APPEND root=UUID=x ro\n")
    for version in ("6.1.0-9", "6.1.0-10"):
        (boot / f"vmlinuz-{version}-amd64").write_text(f"{version} kernel")
        (boot / f"initrd.img-{version}-amd64").write_text(f"{version} initrd")
    hook = SCRIPTS_DIR / "esp-kernel-hook.sh"
    done = subprocess.run(
        ["busybox", "sh", str(hook)], env={"HAOSCAR_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (esp / "vmlinuz").read_text() == "6.1.0-10 kernel"  # version order, not text order (-10 > -9)
    assert (esp / "initrd.img").read_text() == "6.1.0-10 initrd"
    assert (esp / "syslinux.cfg").read_text().splitlines()[1:3] == ["    LINUX vmlinuz", "    INITRD initrd.img"]
    assert sorted(p.name for p in esp.iterdir()) == ["initrd.img", "syslinux.cfg", "vmlinuz"]


def test_no_private_scratch_directory_fails_the_install_and_reports_it() -> None:
    # mktemp -d refused (a full or read-only /tmp): the install stops there, says why on the console and tells the
    # head (never falls back to the shared /tmp, where side-by-side installs would read each other's files).
    stubs = (
        'network() { SERVER=http://198.18.0.1:8470; MAC=52:54:00:00:00:01; log "network up"; }\n'
        'post() { echo "POST $1 $2"; }\n'
        "mktemp() { return 1; }\n"
        'firmware() { echo "firmware asked: past the scratch directory" >&2; echo bios; }\n'
        "main\n"
    )
    script = f'HAOSCAR_LIB=1 . "{SCRIPTS_DIR / "install.sh"}"\n{stubs}'
    done = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    reason = "cannot make a private scratch directory in /tmp (mktemp -d failed: is /tmp full or read-only?)"
    assert done.stdout.splitlines() == [
        "haoscar-install: network up",
        f"haoscar-install: FAILED in stage node: {reason}",
        "POST /install/52:54:00:00:00:01/failed stage=node&reason="
        "cannot+make+a+private+scratch+directory+in+/tmp+(mktemp+-d+failed:+is+/tmp+full+or+read-only%3F)",
    ]
    assert done.stderr == ""
