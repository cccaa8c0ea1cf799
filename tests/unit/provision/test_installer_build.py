"""The installer's building blocks without a download: the cpio writer, module dependencies read from ELF
.modinfo sections, and the load order they give."""

from __future__ import annotations

import gzip
import stat
import struct
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.provision.installer_cpio import Entry, cpio_newc, read_newc, write_initramfs
from haoscar.provision.installer_kernel import modinfo_depends, plan_modules


def fake_module(depends: str) -> bytes:
    """A minimal ELF64 relocatable file with a .modinfo section, as a kernel module has."""
    modinfo = f"license=GPL\0depends={depends}\0name=x\0".encode()
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    data_off = 64
    modinfo_off = data_off
    strtab_off = modinfo_off + len(modinfo)
    shoff = (strtab_off + len(shstrtab) + 7) & ~7
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 1)
    body = header + modinfo + shstrtab
    body += bytes(shoff - len(body))
    null = bytes(64)
    strtab_sh = struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, strtab_off, len(shstrtab), 0, 0, 1, 0)
    modinfo_sh = struct.pack("<IIQQQQIIQQ", 11, 1, 0, 0, modinfo_off, len(modinfo), 0, 0, 1, 0)
    return body + null + strtab_sh + modinfo_sh


def test_cpio_round_trip_adds_parents_and_is_reproducible(tmp_path: Path) -> None:
    entries = [
        Entry.file("usr/lib/haoscar/install.sh", b"#!/bin/sh\necho hi\n", 0o755),
        Entry.symlink("bin/sh", "/bin/busybox"),
        Entry.chardev("dev/console", 5, 1),
    ]
    archive = read_newc(cpio_newc(entries))
    assert archive["usr/lib/haoscar/install.sh"].data == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(archive["usr/lib/haoscar/install.sh"].mode) == 0o755
    assert archive["bin/sh"].data == b"/bin/busybox" and stat.S_ISLNK(archive["bin/sh"].mode)
    assert archive["dev/console"].rdev == (5, 1) and stat.S_ISCHR(archive["dev/console"].mode)
    for parent in ("usr", "usr/lib", "usr/lib/haoscar", "bin", "dev"):
        assert stat.S_ISDIR(archive[parent].mode), parent
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    write_initramfs(first, entries)
    write_initramfs(second, list(reversed(entries)))
    assert first.read_bytes() == second.read_bytes()
    assert read_newc(gzip.decompress(first.read_bytes())).keys() == archive.keys()


def test_module_dependencies_come_from_modinfo() -> None:
    assert modinfo_depends(fake_module("virtio,virtio_ring")) == ["virtio", "virtio_ring"]
    assert modinfo_depends(fake_module("")) == []


def test_modules_load_after_their_dependencies_and_builtins_and_missing_are_told(tmp_path: Path) -> None:
    modules = tmp_path / "lib/modules/6.1.0-test"
    (modules / "kernel/drivers").mkdir(parents=True)
    for name, depends in {
        "virtio_net": "net_failover,virtio",
        "net_failover": "failover",
        "failover": "",
        "virtio": "virtio_ring",
        "virtio_ring": "",
        "virtio_blk": "virtio",
    }.items():
        (modules / "kernel/drivers" / f"{name}.ko").write_bytes(fake_module(depends))
    (modules / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    plan = plan_modules(modules, ["virtio-net", "virtio_blk", "ext4", "e1000"])
    order = [p.stem for p in plan.load_order]
    assert order == ["failover", "net_failover", "virtio_ring", "virtio", "virtio_net", "virtio_blk"]
    assert plan.builtin == ["ext4"]
    assert plan.missing == ["e1000"]


def test_a_bad_kernel_package_name_is_refused_before_anything_is_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("linux-image-amd64; rm -rf /", "bash", "linux-image-"):
        with pytest.raises(SystemExit) as done:
            run(["--state-dir", str(tmp_path), "netboot", "build-installer", "--kernel-package", bad])
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert "linux-image-amd64" in err and "linux-image-cloud-amd64" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written
