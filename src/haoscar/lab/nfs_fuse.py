"""``python -m haoscar.lab.nfs_fuse SERVER EXPORT MOUNTPOINT --status FILE``: an NFS export as a FUSE mount.

The lab's stand-in for ``mount -t nfs4 -o hard SERVER:EXPORT MOUNTPOINT`` in a namespace host (this machine's
kernel has no NFS client; docs/lab.md). Every file operation becomes libnfs calls (``nfs_client.Session``) made
with the caller's uid and gid (AUTH_SYS, as a kernel client sends them), so the server's permission checks and
root squashing apply as they would to a kernel mount; the kernel does no permission checks of its own. Attribute
and entry caches are off: a file another node just wrote is seen at once (stricter than NFS close-to-open).

It runs in the foreground until unmounted (``umount MOUNTPOINT``) or SIGTERMed, single-threaded (a libnfs context
is not thread-safe, and a hard mount blocks every caller while the server is away anyway). ``--status`` names a
JSON file rewritten at start and after every reconnect: ``{"pid", "server", "export", "mountpoint",
"reconnects", "blocked_s"}``.
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import json
import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import mfusepy

from haoscar.lab.nfs4_setattr import Attrs, Creds
from haoscar.lab.nfs_client import NfsError, NfsStat64, Session

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
log = logging.getLogger("haoscar.nfs_fuse")


def _caller() -> Creds:
    uid, gid, _pid = mfusepy.fuse_get_context()
    return Creds(uid, gid)


def _attrs(st: NfsStat64) -> dict[str, Any]:
    return {
        "st_mode": st.mode,
        "st_ino": st.ino,
        "st_nlink": st.nlink,
        "st_uid": st.uid,
        "st_gid": st.gid,
        "st_size": st.size,
        "st_blocks": st.blocks,
        "st_blksize": st.blksize,
        "st_atime": st.atime * 10**9 + st.atime_nsec,
        "st_mtime": st.mtime * 10**9 + st.mtime_nsec,
        "st_ctime": st.ctime * 10**9 + st.ctime_nsec,
    }


def _settime(value: int, now: int) -> int | None:
    """A utimens time (seconds * 1e9 + tv_nsec, as mfusepy adds them): tv_nsec may be UTIME_NOW or UTIME_OMIT
    (touch, touch -a, touch -m), with any tv_sec."""
    if (value - UTIME_NOW) % 10**9 == 0:
        return now
    if (value - UTIME_OMIT) % 10**9 == 0:
        return None
    return value


# What a file system answers every day (a lookup of a name that is not there, a denied access...): not logged.
ORDINARY = frozenset(
    {errno.ENOENT, errno.EEXIST, errno.EACCES, errno.EPERM, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}
    | {errno.ENAMETOOLONG, errno.EXDEV, errno.ELOOP}
)


def _errors(error: NfsError) -> mfusepy.FuseOSError:
    code = error.errno or errno.EIO
    if code not in ORDINARY:  # the application sees only the errno: the server's status is in the message
        log.warning("%s", error.strerror)
    return mfusepy.FuseOSError(code)


class NfsFs(mfusepy.Operations):  # type: ignore[misc]  # mfusepy has no type hints
    """The FUSE operations: each one a ``Session`` call as the calling process's user."""

    use_ns = True
    flag_utime_omit_ok = 1  # libfuse passes UTIME_OMIT and UTIME_NOW to utimens (touch -m, touch -a)

    def __init__(self, session: Session) -> None:
        self.session = session

    def _run(self, operation: Any) -> Any:
        try:
            return self.session.call(_caller(), operation)
        except NfsError as exc:
            raise _errors(exc) from None

    def _file(self, fh: int, operation: Any) -> Any:
        try:
            return self.session.with_file(fh, operation)
        except NfsError as exc:
            raise _errors(exc) from None

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return _attrs(self._run(lambda c: c.stat(path)))

    def readdir(self, path: str, fh: int) -> list[str]:
        # Names only: libnfs 4.0 gives no inode numbers in READDIR (0, which readdir(3) skips as deleted), so
        # libfuse numbers the entries itself (no use_ino).
        entries: list[tuple[str, int, int]] = self._run(lambda c: c.listdir(path))
        return [".", "..", *(name for name, _ino, _mode in entries if name not in (".", ".."))]

    def readlink(self, path: str) -> str:
        return str(self._run(lambda c: c.readlink(path)))

    def statfs(self, path: str) -> dict[str, int]:
        st = self._run(lambda c: c.statvfs(path))
        fields = ("bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "flag", "namemax")
        return {f"f_{name}": int(getattr(st, name)) for name in fields}

    def mkdir(self, path: str, mode: int) -> int:
        self._run(lambda c: c.mkdir(path, stat.S_IMODE(mode)))
        return 0

    def rmdir(self, path: str) -> int:
        self._run(lambda c: c.rmdir(path))
        return 0

    def unlink(self, path: str) -> int:
        self._run(lambda c: c.unlink(path))
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._run(lambda c: c.symlink(source, target))
        return 0

    def rename(self, old: str, new: str) -> int:
        self._run(lambda c: c.rename(old, new))
        self.session.rename_open(old, new)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self._run(lambda c: c.setattr(path, Attrs(mode=stat.S_IMODE(mode))))
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        # chown(1) with only a user or only a group passes -1 for the other: leave it as it is.
        attrs = Attrs(uid=None if uid == -1 else uid, gid=None if gid == -1 else gid)
        self._run(lambda c: c.setattr(path, attrs))
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        now = time.time_ns()
        atime, mtime = times if times is not None else (now, now)
        attrs = Attrs(atime_ns=_settime(atime, now), mtime_ns=_settime(mtime, now))
        self._run(lambda c: c.setattr(path, attrs))
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            self._file(fh, lambda c, h: c.truncate(path, length, h))
        else:
            self._run(lambda c: c.truncate(path, length))
        return 0

    def open(self, path: str, flags: int) -> int:
        return self._open(path, flags, 0o644)

    def create(self, path: str, mode: int, flags: int) -> int:
        return self._open(path, flags | os.O_CREAT, stat.S_IMODE(mode))

    def _open(self, path: str, flags: int, mode: int) -> int:
        try:
            return self.session.open(path, flags, mode, _caller())
        except NfsError as exc:
            raise _errors(exc) from None

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        data: bytes = self._file(fh, lambda c, h: c.pread(h, size, offset))
        return data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        at_end = self.session.entry(fh).flags & os.O_APPEND
        wrote: int = self._file(fh, lambda c, h: c.pwrite(h, data, None if at_end else offset))
        return wrote

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._file(fh, lambda c, h: c.fsync(h))
        return 0

    def flush(self, path: str, fh: int) -> int:
        # close(2) of a kernel NFS mount writes and commits the file's data: so does this one.
        if self.session.entry(fh).flags & (os.O_WRONLY | os.O_RDWR):
            self._file(fh, lambda c, h: c.fsync(h))
        return 0

    def release(self, path: str, fh: int) -> int:
        self.session.close(fh)
        return 0


def write_status(path: Path | None, session: Session, mountpoint: str) -> None:
    if path is None:
        return
    status = {
        "pid": os.getpid(),
        "server": session.server,
        "export": session.export,
        "mountpoint": mountpoint,
        "reconnects": session.reconnects,
        "blocked_s": round(session.blocked_s, 3),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m haoscar.lab.nfs_fuse", description=__doc__.split("\n")[0])
    parser.add_argument("server")
    parser.add_argument("export")
    parser.add_argument("mountpoint")
    parser.add_argument("--status", type=Path, help="JSON status file, rewritten after each reconnect")
    parser.add_argument("--debug", action="store_true", help="log every FUSE request and error")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A fault inside libnfs (C, through ctypes) would otherwise end the process without a word in its log.
    faulthandler.enable()
    session = Session(args.server, args.export)
    session.on_reconnect = lambda s: write_status(args.status, s, args.mountpoint)
    session.connection(Creds(0, 0))  # the export must answer before the mount point is taken (the caller waits)
    os.makedirs(args.mountpoint, exist_ok=True)
    write_status(args.status, session, args.mountpoint)
    options = {
        "fsname": f"{args.server}:{args.export}",
        "subtype": "haoscar-nfs",
        "allow_other": True,
        "nonempty": True,  # as a kernel mount, hide what the directory held (libfuse 2 refuses it otherwise)
        "big_writes": True,
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
    }
    mfusepy.FUSE(NfsFs(session), args.mountpoint, foreground=True, nothreads=True, debug=args.debug, **options)
    # libfuse's loop ends on an unmount and on SIGHUP, SIGINT or SIGTERM: say so, an ended mount must be explained.
    log.info("%s: the FUSE loop ended (unmounted or signalled); %d reconnects", args.mountpoint, session.reconnects)
    write_status(args.status, session, args.mountpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
