"""A cpio archive in the kernel's ``newc`` format, gzip-compressed: the initramfs the installer boots into.

Written in Python rather than with ``cpio``: entries need no files on disk (device nodes such as /dev/console
without mknod), owners are root whoever builds, and timestamps are zero, so the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. ``path`` is relative to the archive root (no leading slash)."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    @classmethod
    def directory(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644) -> Entry:
        return cls(path, stat.S_IFREG | perm, data)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def chardev(cls, path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return cls(path, stat.S_IFCHR | perm, b"", (major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name) + 1, 0)
    return b"070701" + b"".join(f"{value:08X}".encode() for value in fields)


def cpio_newc(entries: list[Entry]) -> bytes:
    """The uncompressed archive. Parent directories are added where missing, before their children."""
    wanted: dict[str, Entry] = {}
    for entry in entries:
        parts = entry.path.strip("/").split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            wanted.setdefault(parent, Entry.directory(parent))
        wanted[entry.path.strip("/")] = entry
    out = bytearray()
    # Sorted by path: a directory always precedes what it holds, and the archive is reproducible.
    for ino, (path, entry) in enumerate(sorted(wanted.items()), start=1):
        name = path.encode()
        header = _header(ino, entry, name)
        out += header + name + b"\0"
        out += _pad(len(header) + len(name) + 1)
        out += entry.data + _pad(len(entry.data))
    trailer = Entry(_TRAILER, 0)
    header = _header(0, trailer, _TRAILER.encode())
    out += header + _TRAILER.encode() + b"\0" + _pad(len(header) + len(_TRAILER) + 1)
    return bytes(out)


def write_initramfs(path: Path, entries: list[Entry]) -> int:
    """Write the gzip'd archive to ``path`` (via a temporary file); returns its size in bytes."""
    data = gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def read_newc(data: bytes) -> dict[str, Entry]:
    """Parse an uncompressed newc archive (for tests and ``build-installer --check``)."""
    found: dict[str, Entry] = {}
    pos = 0
    while True:
        if data[pos : pos + 6] != b"070701":
            raise ValueError(f"not a newc cpio member at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = data[pos : pos + namesize - 1].decode()
        pos += namesize + (-(110 + namesize) % 4)
        body = data[pos : pos + size]
        pos += size + (-size % 4)
        if name == _TRAILER:
            return found
        found[name] = Entry(name, mode, body, (fields[9], fields[10]))
