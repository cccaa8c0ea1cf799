"""Where network-boot files live under the state directory, and how they are written.

Two write paths: the incremental one (a few nodes) writes each file durably (temp file, fsync, rename); the full
pass over thousands of nodes writes temp files and renames without a per-file fsync, then makes the whole batch
durable with one ``syncfs`` of the file system: per-file fsync would dominate a 10,000-node regeneration. Either
way a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from haoscar.fsutil import atomic_write


@dataclass(frozen=True)
class NetbootPaths:
    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> NetbootPaths:
        return cls(state_dir / "netboot")

    @property
    def conf(self) -> Path:
        return self.root / "dnsmasq.conf"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts.d"

    @property
    def ipxe_dir(self) -> Path:
        return self.root / "ipxe"

    @property
    def tftp_dir(self) -> Path:
        return self.root / "tftp"

    @property
    def boot_dir(self) -> Path:
        """Kernels and initrds served over HTTP under /files/ (one directory per image)."""
        return self.root / "boot"

    @property
    def entry_script(self) -> Path:
        return self.root / "entry.ipxe"

    @property
    def pid_file(self) -> Path:
        return self.root / "dnsmasq.pid"

    @property
    def lease_file(self) -> Path:
        return self.root / "dnsmasq.leases"

    @property
    def log_file(self) -> Path:
        return self.root / "dnsmasq.log"

    def host_file(self, node: str) -> Path:
        return self.hosts_dir / node

    def ipxe_file(self, node: str) -> Path:
        return self.ipxe_dir / f"{node}.ipxe"

    def make_dirs(self) -> None:
        for path in (self.root, self.hosts_dir, self.ipxe_dir, self.tftp_dir, self.boot_dir):
            path.mkdir(parents=True, exist_ok=True)


@contextmanager
def sync_lock(paths: NetbootPaths) -> Iterator[None]:
    """One sync at a time per state directory (temp file names are fixed, and reports must not interleave)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.root / ".sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, durable: bool) -> None:
    """Replace ``path`` by ``data`` through a temp file and a rename (fsync'd first when ``durable``)."""
    atomic_write(path, data, durable=durable, compare=False)  # the caller compared already


def same_content(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def sync_dirs(*dirs: Path) -> None:
    """Make a batch of non-fsync'd writes (and the renames) durable: one syncfs, then fsync of each directory."""
    if not dirs:
        return
    fd = os.open(dirs[0], os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
    for directory in dirs:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def stage_dir(target: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a fresh hidden sibling of ``target`` (one create per file, no renames, no fsync)."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    base = str(staging)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for name, data in files.items():
        fd = os.open(os.path.join(base, name), flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return staging


def swap_in(staging: Path, target: Path, *, keep_old: bool = False) -> Path | None:
    """Atomically exchange ``staging`` and ``target`` (renameat2 RENAME_EXCHANGE), then drop the old tree, or with
    ``keep_old`` move it aside to a hidden ``.NAME.old-N`` sibling and return that (the caller removes it later).

    A reader sees the old directory or the new one, never a mix and never none."""
    if not target.exists():
        os.rename(staging, target)
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(target))
    if not keep_old:
        shutil.rmtree(staging)
        return None
    old = target.with_name(f".{target.name}.old-{time.monotonic_ns()}")
    os.rename(staging, old)
    return old
