"""``haoscar netboot build-installer``: the kernel and initramfs that network-booting nodes install from.

The initramfs holds busybox (static, with its applet links), the kernel modules for virtio and common real NICs
and disks (dependencies resolved from the modules themselves), the few dynamic tools busybox lacks (sfdisk,
mke2fs, extlinux, each with the libraries ``ldd`` names), the syslinux MBR, and haoscar's install script. The
result goes to ``STATE/netboot/boot/installer/`` where the boot server serves it for every image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write
from haoscar.provision.installer_cpio import Entry, write_initramfs
from haoscar.provision.installer_kernel import (
    META_PACKAGE,
    KernelTree,
    ModulePlan,
    checked_kernel_package,
    fetch_kernel,
    module_data,
    plan_modules,
    resolve_package,
)
from haoscar.provision.netboot_files import NetbootPaths

INSTALLER_DIR = "installer"
KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
MODULE_LIST = "etc/haoscar-modules"

# Dynamic tools the installer runs that busybox lacks or does poorly (path inside the initramfs, host program).
TOOLS: tuple[tuple[str, str], ...] = (
    ("usr/sbin/sfdisk", "sfdisk"),
    ("usr/sbin/mke2fs", "mke2fs"),
    ("usr/bin/extlinux", "extlinux"),
)
TOOL_LINKS: tuple[tuple[str, str], ...] = (("usr/sbin/mkfs.ext4", "mke2fs"),)
DATA_FILES: tuple[tuple[str, str], ...] = (
    ("usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/syslinux/mbr/mbr.bin"),
    # UEFI machines: syslinux.efi as the removable-media boot loader on the EFI system partition
    ("usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"),
    ("usr/lib/syslinux/modules/efi64/ldlinux.e64", "/usr/lib/syslinux/modules/efi64/ldlinux.e64"),
    ("etc/mke2fs.conf", "/etc/mke2fs.conf"),
)
BASE_DIRS = ("proc", "sys", "dev", "tmp", "mnt", "run", "var", "etc", "root", "usr/sbin", "usr/bin", "sbin", "bin")

Progress = Callable[[float, str], None]
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "data" / "installer"


def default_cache_dir(state_dir: Path) -> Path:
    return state_dir / "cache" / "installer"


def _script(name: str) -> bytes:
    return (SCRIPTS_DIR / name).read_bytes()


def _which(program: str) -> Path:
    found = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise UserError(
            f"{program} is not installed on this head node; the installer needs it "
            "(apt-get install busybox-static fdisk e2fsprogs extlinux syslinux-common)"
        )
    return Path(found)


def shared_libraries(program: Path) -> list[Path]:
    """The libraries ``program`` loads, as ``ldd`` resolves them (the dynamic loader included)."""
    result = subprocess.run(["ldd", str(program)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise UserError(f"ldd {program} failed: {result.stderr.strip()}")
    libs: list[Path] = []
    for line in result.stdout.splitlines():
        words = line.split()
        if "=>" in words:
            after = words[words.index("=>") + 1 :]
            if after and after[0].startswith("/"):
                libs.append(Path(after[0]))
        elif words and words[0].startswith("/"):
            libs.append(Path(words[0]))
    return libs


def busybox_entries() -> list[Entry]:
    """busybox-static at /bin/busybox and a link for each applet (``--list-full`` gives their usual paths)."""
    busybox = _which("busybox")
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    if shared_libraries(busybox):
        raise UserError(f"{busybox} is dynamically linked; install busybox-static for the installer")
    entries = [Entry.file("bin/busybox", busybox.read_bytes(), 0o755)]
    for applet in listing.split():
        if applet.strip("/") != "bin/busybox":
            entries.append(Entry.symlink(applet.strip("/"), "/bin/busybox"))
    return entries


def module_entries(kernel: KernelTree, plan: ModulePlan) -> list[Entry]:
    base = kernel.modules_dir
    entries: list[Entry] = []
    order: list[str] = []
    for path in plan.load_order:
        relative = path.relative_to(base).as_posix().removesuffix(".xz")
        inside = f"lib/modules/{kernel.release}/{relative}"
        entries.append(Entry.file(inside, module_data(path)))
        order.append(f"/{inside}")
    entries.append(Entry.file(MODULE_LIST, "".join(f"{line}\n" for line in order).encode()))
    return entries


def tool_entries(tools: Iterable[tuple[str, str]] = TOOLS) -> list[Entry]:
    entries: list[Entry] = []
    libraries: dict[str, Path] = {}
    for inside, program in tools:
        path = _which(program)
        entries.append(Entry.file(inside, path.read_bytes(), 0o755))
        for lib in shared_libraries(path):
            libraries.setdefault(lib.as_posix().lstrip("/"), lib)
    for inside, lib in sorted(libraries.items()):
        entries.append(Entry.file(inside, lib.resolve().read_bytes(), 0o755))
    for link, target in TOOL_LINKS:
        entries.append(Entry.symlink(link, target))
    for inside, source in DATA_FILES:
        if not Path(source).exists():
            raise UserError(f"{source} is missing; apt-get install syslinux-common syslinux-efi e2fsprogs")
        entries.append(Entry.file(inside, Path(source).read_bytes()))
    return entries


def base_entries(init: bytes) -> list[Entry]:
    entries = [Entry.directory(d) for d in BASE_DIRS]
    entries += [
        Entry.chardev("dev/console", 5, 1),
        Entry.chardev("dev/null", 1, 3, 0o666),
        Entry.file("init", init, 0o755),
    ]
    return entries


def initramfs(kernel: KernelTree, plan: ModulePlan, init: bytes, extra: Iterable[Entry] = ()) -> list[Entry]:
    """busybox + modules + ``init``: the entries of a small initramfs (the installer's, or a tiny image's).

    Later entries replace earlier ones at the same path, so tools override busybox applets of the same name."""
    entries = [*base_entries(init), *busybox_entries(), *module_entries(kernel, plan), *extra]
    unique: dict[str, Entry] = {}
    for entry in entries:
        unique[entry.path] = entry
    return list(unique.values())


@dataclass
class InstallerBuild:
    package: str
    version: str
    release: str
    kernel: str
    initrd: str
    kernel_bytes: int
    initrd_bytes: int
    modules: list[str]
    builtin: list[str]
    missing: list[str]
    tools: list[str]
    cached: bool
    seconds: float = 0.0
    cache_key: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _inputs_digest(kernel: KernelTree, plan: ModulePlan) -> str:
    """What the initramfs depends on: the kernel, the modules chosen, scripts, tools and busybox (by content)."""
    digest = hashlib.sha256(kernel.package.key.encode())
    digest.update(" ".join(path.name for path in plan.load_order).encode())
    digest.update(" ".join(inside for inside, _source in DATA_FILES).encode())
    for name in ("init.sh", "install.sh", "udhcpc.sh", "esp-kernel-hook.sh"):
        digest.update(_script(name))
    for _inside, program in (*TOOLS, ("bin/busybox", "busybox")):
        path = _which(program)
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def installer_entries(kernel: KernelTree, plan: ModulePlan) -> list[Entry]:
    extra = [
        *tool_entries(),
        Entry.file("usr/lib/haoscar/install.sh", _script("install.sh"), 0o755),
        Entry.file("usr/lib/haoscar/esp-kernel-hook.sh", _script("esp-kernel-hook.sh"), 0o755),
        Entry.file("usr/share/udhcpc/default.script", _script("udhcpc.sh"), 0o755),
    ]
    return initramfs(kernel, plan, _script("init.sh"), extra)


def _link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def build_installer(
    state_dir: Path,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    kernel_package: str = META_PACKAGE,
) -> InstallerBuild:
    """Fetch the kernel (cached by package version), build the initramfs (cached by its inputs) and install both
    under ``STATE/netboot/boot/installer/``. ``kernel_package``: the cloud kernel (VMs, the default) or, for real
    hardware, Debian's generic ``linux-image-amd64``, which has the common real NIC and disk drivers."""
    started = time.monotonic()
    cache = cache_dir or default_cache_dir(state_dir)

    def step(percent: float, what: str) -> None:
        if progress is not None:
            progress(percent, what)

    step(0, "resolving the kernel package")
    package = resolve_package(checked_kernel_package(kernel_package))
    step(10, f"fetching {package.package} {package.version}")
    kernel = fetch_kernel(package, cache)
    plan = plan_modules(kernel.modules_dir)
    key = _inputs_digest(kernel, plan)
    cached_initrd = cache / package.key / f"initrd-{key}.img"
    cached = cached_initrd.exists()
    if not cached:
        step(50, "building the initramfs")
        for old in cached_initrd.parent.glob("initrd-*.img"):
            old.unlink()
        write_initramfs(cached_initrd, installer_entries(kernel, plan))
    step(90, "installing kernel and initramfs")
    out = NetbootPaths.under(state_dir).boot_dir / INSTALLER_DIR
    out.mkdir(parents=True, exist_ok=True)
    _link_or_copy(kernel.vmlinuz, out / KERNEL_NAME)
    _link_or_copy(cached_initrd, out / INITRD_NAME)
    result = InstallerBuild(
        package=package.package,
        version=package.version,
        release=kernel.release,
        kernel=str(out / KERNEL_NAME),
        initrd=str(out / INITRD_NAME),
        kernel_bytes=(out / KERNEL_NAME).stat().st_size,
        initrd_bytes=(out / INITRD_NAME).stat().st_size,
        modules=[p.name.removesuffix(".xz").removesuffix(".ko") for p in plan.load_order],
        builtin=plan.builtin,
        missing=plan.missing,
        tools=[inside.rsplit("/", 1)[-1] for inside, _ in TOOLS],
        cached=cached,
        cache_key=key,
    )
    result.seconds = round(time.monotonic() - started, 3)
    atomic_write(out / "manifest.json", json.dumps(result.as_dict(), indent=2) + "\n")
    step(100, "done")
    return result
