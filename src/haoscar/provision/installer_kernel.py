"""The installer's kernel: Debian's cloud kernel package, fetched through apt, and its modules' dependencies.

``linux-image-cloud-amd64`` is a meta package; the versioned package it depends on holds the kernel and its
modules. The package ships no ``modules.dep`` (depmod runs at install time), so dependencies are read from each
module's own ``.modinfo`` ELF section (``depends=``), the same data depmod uses.
"""

from __future__ import annotations

import lzma
import re
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import FieldError, UserError

META_PACKAGE = "linux-image-cloud-amd64"
GENERIC_PACKAGE = "linux-image-amd64"  # real hardware: e1000e, igb, ahci, ... (the cloud kernel lacks them)
_PACKAGE_NAME = re.compile(r"linux-image-[a-z0-9][a-z0-9.+-]*")


def checked_kernel_package(name: str) -> str:
    """A Debian kernel package name (meta or versioned), or a clear error naming what would be right."""
    if not _PACKAGE_NAME.fullmatch(name):
        raise FieldError(
            "kernel_package",
            f"{name!r} is not a Debian kernel package name; use {META_PACKAGE} (VMs, the default) or "
            f"{GENERIC_PACKAGE} (real hardware)",
        )
    return name


# Virtio for VMs first, then common real NICs and disks; modules absent from the cloud kernel are skipped.
WANTED_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    # ext4 asks the crypto API for "crc32c" at mount time (a soft dependency, not in depends=): built into the
    # cloud kernel, a module of the generic one.
    "crc32c_generic",
    "ext4",
    # the EFI system partition of UEFI machines (FAT, with the code page and character set vfat mounts with)
    "vfat",
    "nls_cp437",
    "nls_utf8",
    "nls_ascii",
    "e1000",
    "e1000e",
    "igb",
    "ahci",
    "nvme",
)


@dataclass(frozen=True)
class KernelPackage:
    package: str
    version: str

    @property
    def key(self) -> str:
        """A file-name-safe key for caches: changes whenever Debian publishes a new kernel build."""
        return re.sub(r"[^A-Za-z0-9.+-]", "_", f"{self.package}_{self.version}")


@dataclass(frozen=True)
class KernelTree:
    """An extracted kernel package: the kernel image and ``lib/modules/RELEASE``."""

    package: KernelPackage
    root: Path
    release: str

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError(
            f"{argv[0]} is not installed; haoscar needs it to build the installer (apt-get install)"
        ) from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(f"`{' '.join(argv)}` failed (status {result.returncode})", tail)
    return result.stdout


def resolve_package(meta: str = META_PACKAGE) -> KernelPackage:
    """The versioned kernel package behind the meta package, and the version apt would install."""
    try:
        depends = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", meta])
    except UserError:
        raise UserError(
            f"apt knows no package {meta}; use {META_PACKAGE} or {GENERIC_PACKAGE} (after apt-get update)"
        ) from None
    names = re.findall(r"^\s*Depends:\s*(linux-image-\S+)", depends, re.MULTILINE)
    if not names and meta[len("linux-image-") :][:1].isdigit():
        names = [meta]  # already a versioned kernel package (linux-image-6.1.0-...-amd64)
    if not names:
        raise UserError(f"apt knows no kernel package behind {meta}; run apt-get update and try again")
    package = names[0]
    policy = _run(["apt-cache", "policy", package])
    match = re.search(r"Candidate:\s*(\S+)", policy)
    if match is None or match.group(1) == "(none)":
        raise UserError(f"apt has no candidate version of {package}; run apt-get update and try again")
    return KernelPackage(package, match.group(1))


def fetch_kernel(package: KernelPackage, cache_dir: Path) -> KernelTree:
    """Download and extract the package into ``cache_dir/KEY`` once; later calls reuse it."""
    target = cache_dir / package.key
    tree = target / "tree"
    done = target / ".extracted"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        debs = list(target.glob("*.deb"))
        if not debs:
            _run(["apt-get", "download", "-q", f"{package.package}={package.version}"], cwd=target)
            debs = list(target.glob("*.deb"))
        if not debs:
            raise UserError(f"apt-get download {package.package} left no .deb in {target}")
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
        done.write_text(f"{package.package} {package.version}\n")
    releases = sorted(p.name for p in (tree / "lib" / "modules").iterdir() if p.is_dir())
    if not releases:
        raise UserError(f"{package.package} holds no lib/modules/RELEASE directory; is it a kernel package?")
    return KernelTree(package, tree, releases[-1])


# ------------------------------------------------------------------------------------------------ module info


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def modinfo_depends(elf: bytes) -> list[str]:
    """The ``depends=`` list of a kernel module (an ELF64 little-endian relocatable file)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + index * shentsize)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    for index in range(shnum):
        name_off, offset, size = section(index)
        end = elf.index(b"\0", str_off + name_off)
        if elf[str_off + name_off : end] == b".modinfo":
            for item in elf[offset : offset + size].split(b"\0"):
                if item.startswith(b"depends="):
                    return [d for d in item[8:].decode().split(",") if d]
            return []
    return []


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> file, for every module of the kernel."""
    index: dict[str, Path] = {}
    for path in (modules_dir / "kernel").rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        index[_canonical(name)] = path
    return index


def builtin_modules(modules_dir: Path) -> set[str]:
    path = modules_dir / "modules.builtin"
    if not path.exists():
        return set()
    return {_canonical(Path(line).name.split(".ko")[0]) for line in path.read_text().split()}


@dataclass(frozen=True)
class ModulePlan:
    """Modules to load, dependencies first; the wanted ones that are built in; those the kernel lacks."""

    load_order: list[Path]
    builtin: list[str]
    missing: list[str]


def plan_modules(modules_dir: Path, wanted: Iterable[str] = WANTED_MODULES) -> ModulePlan:
    index = module_index(modules_dir)
    builtin = builtin_modules(modules_dir)
    order: list[Path] = []
    seen: set[str] = set()
    built: list[str] = []
    missing: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise UserError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        path = index[name]
        for dep in map(_canonical, modinfo_depends(_module_bytes(path))):
            if dep in index:
                visit(dep, (*chain, name))
        seen.add(name)
        order.append(path)

    for wanted_name in wanted:
        name = _canonical(wanted_name)
        if name in builtin:
            built.append(name)
        elif name in index:
            visit(name, ())
        else:
            missing.append(name)
    return ModulePlan(order, built, missing)


def module_data(path: Path) -> bytes:
    """The module as ``insmod`` needs it (busybox's insmod cannot read xz-compressed modules)."""
    return _module_bytes(path)
