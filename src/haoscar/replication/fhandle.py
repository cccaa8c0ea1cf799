"""Linux file handles and fanotify through ctypes (Python's ``os`` has neither).

A file handle names an inode of one file system independently of any path (``name_to_handle_at(2)``); an NFS
server hands them to its clients and opens files by them (``open_by_handle_at(2)``). fanotify (``fanotify_init(2)``,
``fanotify_mark(2)``) reports events by file handle (``FAN_REPORT_FID``), which is how the replication learns of a
write made through a handle that inotify does not report (``replication/fanwatch.py``).

Every call raises ``OSError`` with the C library's errno on failure.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

AT_FDCWD = -100
MAX_HANDLE_SZ = 128

# fanotify_init flags (linux/fanotify.h)
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
# fanotify_mark flags
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100
# events
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000
# information records after an event's metadata
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FANOTIFY_METADATA_VERSION = 3

_METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
_HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type
_FSID = 8  # __kernel_fsid_t: two ints

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int
_libc.name_to_handle_at.argtypes = [
    ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
]  # fmt: skip
_libc.name_to_handle_at.restype = ctypes.c_int
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int


@dataclass(frozen=True)
class Handle:
    """A file handle: its type (the file system's encoding) and its opaque bytes."""

    kind: int
    data: bytes

    def packed(self) -> ctypes.Array[ctypes.c_char]:
        """The C ``struct file_handle``."""
        return ctypes.create_string_buffer(_HANDLE_HEADER.pack(len(self.data), self.kind) + self.data)


@dataclass(frozen=True)
class FidEvent:
    """One fanotify event in FID mode: ``named`` when the kernel also reported the parent directory and the name
    (the file was reached through a connected path, which inotify sees too); ``handle`` is the object's own."""

    mask: int
    handle: Handle | None
    named: bool


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def fanotify_init(flags: int, event_f_flags: int = os.O_RDONLY) -> int:
    return _check(_libc.fanotify_init(flags, event_f_flags), "fanotify_init")


def fanotify_mark(fd: int, flags: int, mask: int, path: str | os.PathLike[str]) -> None:
    _check(_libc.fanotify_mark(fd, flags, mask, AT_FDCWD, os.fsencode(path)), f"fanotify_mark {os.fspath(path)}")


def name_to_handle(path: str | os.PathLike[str], follow: bool = False) -> Handle:
    buf = ctypes.create_string_buffer(_HANDLE_HEADER.size + MAX_HANDLE_SZ)
    _HANDLE_HEADER.pack_into(buf, 0, MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    flags = 0x400 if follow else 0  # AT_SYMLINK_FOLLOW
    _check(
        _libc.name_to_handle_at(AT_FDCWD, os.fsencode(path), buf, ctypes.byref(mount_id), flags),
        f"name_to_handle_at {os.fspath(path)}",
    )
    size, kind = _HANDLE_HEADER.unpack_from(buf, 0)
    return Handle(kind, bytes(buf.raw[_HANDLE_HEADER.size : _HANDLE_HEADER.size + size]))


def open_by_handle(mount_fd: int, handle: Handle, flags: int) -> int:
    """An fd for the inode ``handle`` names on the file system of ``mount_fd`` (needs CAP_DAC_READ_SEARCH)."""
    return _check(_libc.open_by_handle_at(mount_fd, handle.packed(), flags | os.O_CLOEXEC), "open_by_handle_at")


def parse_events(buf: bytes) -> list[FidEvent]:
    """The events of one ``read()`` of a fanotify group made with ``FAN_REPORT_FID`` (and ``DFID_NAME``)."""
    events: list[FidEvent] = []
    offset = 0
    while offset + _METADATA.size <= len(buf):
        length, version, _, meta_len, mask, fd, _pid = _METADATA.unpack_from(buf, offset)
        if length < _METADATA.size or version != FANOTIFY_METADATA_VERSION:
            raise OSError(0, f"fanotify event of version {version} and length {length}: not understood")
        if fd >= 0:  # not in FID mode, but never leak one
            os.close(fd)
        handle: Handle | None = None
        named = False
        info = offset + meta_len
        while info + _INFO_HEADER.size <= offset + length:
            kind, _, info_len = _INFO_HEADER.unpack_from(buf, info)
            if info_len < _INFO_HEADER.size:
                break
            if kind == FAN_EVENT_INFO_TYPE_DFID_NAME:
                named = True
            elif kind == FAN_EVENT_INFO_TYPE_FID:
                start = info + _INFO_HEADER.size + _FSID
                size, handle_kind = _HANDLE_HEADER.unpack_from(buf, start)
                data = buf[start + _HANDLE_HEADER.size : start + _HANDLE_HEADER.size + size]
                handle = Handle(handle_kind, bytes(data))
            info += info_len
        events.append(FidEvent(mask, handle, named))
        offset += length
    return events
