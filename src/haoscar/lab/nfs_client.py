"""A reconnecting NFSv4 client over Debian's libnfs (``libnfs13``), for the lab's userspace NFS mounts.

This machine's kernel has no NFS client, so a lab compute host cannot ``mount -t nfs4``; ``nfs_fuse`` mounts the
export through FUSE instead and calls this module for every file operation. libnfs speaks real NFSv4 over TCP
(COMPOUNDs with PUTROOTFH/LOOKUP/OPEN/READ/WRITE...), so the server is the heads' NFS-Ganesha as a kernel client
would see it. Production nodes use their kernel's client; this exists for namespaces only (docs/lab.md).

``Session`` behaves like a ``hard`` mount across a head failover: a call that fails with a transport error, a
stale handle or a lost NFSv4 state is retried, after a new connection and mount to the same server address (the
alias, which moved to the other head), until it works; a server that asks for a request again later
(NFS4ERR_GRACE, NFS4ERR_DELAY) gets it again on the same connection. Open files are reopened by path on the new
connection (the standby's copy is another file system: the old handles are stale there). Every reconnect is logged
and counted. Only the synchronous API is used, from one thread: a libnfs context is not thread-safe.

Each connection is its own NFSv4 client: its own client ID string and verifier, hence its own open owner (libnfs
uses the client ID string as the open owner's name). libnfs 4.0's default string is "Libnfs pid:PID SECONDS", so
two connections made within one second by one process (a user's first call just after a reconnect of every
user, or a renewal), or by two lab nodes whose FUSE processes have the same pid in their PID namespaces, were one
client to the server: the second's SETCLIENTID replaced the first's client, whose next OPEN then failed with
NFS4ERR_EXPIRED (seen in the lab; libnfs reports it as ERANGE, "Numerical result out of range").
"""

from __future__ import annotations

import ctypes
import errno
import functools
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from haoscar.lab import nfs4_status
from haoscar.lab.nfs4_setattr import Attrs, Creds, setattr_path

log = logging.getLogger("haoscar.nfs_client")
T = TypeVar("T")
NFS_V4 = 4
CALL_TIMEOUT_MS = 3000  # one RPC; then the call is retried on a new connection
READ_CHUNK = 256 * 1024
WRITE_CHUNK = 3584
# What libnfs returns when the connection, not the server, failed: RPC errors are -EFAULT, RPC timeouts -EINTR,
# a socket that broke while waiting -EIO.
TRANSPORT = frozenset(
    {errno.EFAULT, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.ENOTCONN, errno.ECONNRESET, errno.ECONNREFUSED}
    | {errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNABORTED}
)
# RPC timeouts: the request may still be queued in that libnfs context (and its reply may still come), so the
# context is never used again; a hard mount retries the call on a fresh connection, for as long as it takes.
TIMEOUTS = frozenset({errno.EINTR, errno.ETIMEDOUT})
# libnfs errnos that mean "this connection's state is gone" when its message names no NFSv4 status: a stale file
# handle, and the -ERANGE libnfs 4.0 gives every NFSv4-only status (nfs4_status.RENEW names them).
STALE = frozenset({errno.ESTALE, errno.ERANGE})
# Fresh connections one call may make for a lost state: each is a new client ID and open owner, so the same
# status again after that is the server's answer, not old state.
RENEWALS = 3
_SERIAL = itertools.count(1)


class NfsStat64(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            *("dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks"),
            *("atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used"),
        )
    ]


class NfsStatvfs64(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            *("bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail", "fsid", "flag", "namemax"),
        )
    ]


class NfsDirent(ctypes.Structure):
    pass


NfsDirent._fields_ = [
    ("next", ctypes.POINTER(NfsDirent)),
    ("name", ctypes.c_char_p),
    ("inode", ctypes.c_uint64),
    ("type", ctypes.c_uint32),
    ("mode", ctypes.c_uint32),
]

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_S = ctypes.c_char_p
_I = ctypes.c_int
_U64 = ctypes.c_uint64
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "nfs_init_context": (_P, []),
    "nfs_destroy_context": (None, [_P]),
    "nfs_get_error": (_S, [_P]),
    "nfs_set_version": (_I, [_P, _I]),
    "nfs4_set_client_name": (None, [_P, _S]),
    "nfs4_set_verifier": (None, [_P, _S]),
    "nfs_set_timeout": (None, [_P, _I]),
    "nfs_set_autoreconnect": (None, [_P, _I]),
    "nfs_set_dircache": (None, [_P, _I]),
    "nfs_set_uid": (None, [_P, _I]),
    "nfs_set_gid": (None, [_P, _I]),
    "nfs_umask": (ctypes.c_uint16, [_P, ctypes.c_uint16]),
    "nfs_get_readmax": (_U64, [_P]),
    "nfs_get_writemax": (_U64, [_P]),
    "nfs_mount": (_I, [_P, _S, _S]),
    "nfs_stat64": (_I, [_P, _S, ctypes.POINTER(NfsStat64)]),
    "nfs_lstat64": (_I, [_P, _S, ctypes.POINTER(NfsStat64)]),
    "nfs_statvfs64": (_I, [_P, _S, ctypes.POINTER(NfsStatvfs64)]),
    "nfs_opendir": (_I, [_P, _S, _PP]),
    "nfs_readdir": (ctypes.POINTER(NfsDirent), [_P, _P]),
    "nfs_closedir": (None, [_P, _P]),
    "nfs_open2": (_I, [_P, _S, _I, _I, _PP]),
    "nfs_close": (_I, [_P, _P]),
    "nfs_pread": (_I, [_P, _P, _U64, _U64, ctypes.c_char_p]),
    "nfs_pwrite": (_I, [_P, _P, _U64, _U64, ctypes.c_char_p]),
    "nfs_write": (_I, [_P, _P, _U64, ctypes.c_char_p]),
    "nfs_fsync": (_I, [_P, _P]),
    "nfs_ftruncate": (_I, [_P, _P, _U64]),
    "nfs_truncate": (_I, [_P, _S, _U64]),
    "nfs_mkdir2": (_I, [_P, _S, _I]),
    "nfs_rmdir": (_I, [_P, _S]),
    "nfs_unlink": (_I, [_P, _S]),
    "nfs_rename": (_I, [_P, _S, _S]),
    "nfs_symlink": (_I, [_P, _S, _S]),
    "nfs_readlink2": (_I, [_P, _S, ctypes.POINTER(ctypes.c_char_p)]),
}


@functools.cache
def libnfs() -> ctypes.CDLL:
    """The library with every prototype set (a wrong or missing one would pass pointers as 32-bit ints)."""
    lib = ctypes.CDLL("libnfs.so.13", use_errno=True)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


class NfsError(OSError):
    """A failed libnfs call: ``errno`` (an NFSv4 status's errno, not libnfs's ERANGE), the message from
    ``nfs_get_error``."""

    @property
    def status(self) -> str | None:
        """The NFSv4 status the server answered, if the message names one (``NFS4ERR_GRACE``...)."""
        return nfs4_status.name_in(self.strerror or "")


def client_identity() -> tuple[bytes, bytes]:
    """A client ID string no other connection of this machine uses, and a verifier, for SETCLIENTID."""
    # Random, not only pid and time: lab hosts have PID namespaces of their own, where the FUSE processes of two
    # nodes often have the same pid (and the server tells clients apart by this string, not by their address).
    name = f"haoscar-nfs {socket.gethostname()[:24]} {os.getpid()}.{next(_SERIAL)} {os.urandom(8).hex()}"
    return name.encode(), os.urandom(8)


class Connection:
    """One libnfs context, connected and mounted. Every method raises ``NfsError`` on failure."""

    def __init__(self, server: str, export: str, timeout_ms: int = CALL_TIMEOUT_MS) -> None:
        self.server, self.export, self.timeout_ms = server, export, timeout_ms
        self.lib = libnfs()
        self.ctx = self.lib.nfs_init_context()
        if not self.ctx:
            raise NfsError(errno.ENOMEM, "nfs_init_context failed")
        self._creds = Creds(-1, -1)
        try:
            self._check(self.lib.nfs_set_version(self.ctx, NFS_V4), "set version 4")
            # Replaces libnfs's per-second default (module docstring). libnfs copies both; the default string's
            # copy is not freed (a few bytes per connection, and connections are made rarely).
            name, verifier = client_identity()
            self.lib.nfs4_set_client_name(self.ctx, name)
            self.lib.nfs4_set_verifier(self.ctx, verifier)
            self.lib.nfs_set_timeout(self.ctx, timeout_ms)
            self.lib.nfs_set_autoreconnect(self.ctx, 0)  # Session reconnects: a new server needs a new NFSv4 client
            self.lib.nfs_set_dircache(self.ctx, 0)  # another node's changes must show at once
            self.lib.nfs_umask(self.ctx, 0)  # the kernel already applied the caller's umask to the mode
            self._check(self.lib.nfs_mount(self.ctx, server.encode(), export.encode()), f"mount {server}:{export}")
        except BaseException:
            self.close()
            raise
        # libnfs 4.0 reports no maxima over NFSv4 (0), and encodes each NFSv4 call in a 4 KiB buffer: a WRITE
        # carries at most ~3.9 KiB of data (more fails with "ZDR error: Failed to encode COMPOUND4args").
        self.readmax = int(self.lib.nfs_get_readmax(self.ctx)) or READ_CHUNK
        self.writemax = WRITE_CHUNK

    def close(self) -> None:
        if self.ctx:
            self.lib.nfs_destroy_context(self.ctx)
            self.ctx = None

    def _check(self, result: int, what: str) -> int:
        if result < 0:
            message = (self.lib.nfs_get_error(self.ctx) or b"").decode(errors="replace")
            # -1 is -EPERM, and also what a call returns when it could not even be queued (a dead socket).
            code = errno.EIO if result == -1 and "async failed" in message else -result
            status = nfs4_status.name_in(message)
            if code == errno.ERANGE and status is not None:
                code = nfs4_status.errno_of(status)  # libnfs's ERANGE for any NFSv4-only status (nfs4_status)
            raise NfsError(code, f"{what}: {os.strerror(code)} ({message})")
        return result

    def as_user(self, creds: Creds) -> None:
        if creds != self._creds:
            self.lib.nfs_set_uid(self.ctx, creds.uid)
            self.lib.nfs_set_gid(self.ctx, creds.gid)
            self._creds = creds

    def stat(self, path: str, follow: bool = False) -> NfsStat64:
        st = NfsStat64()
        call = self.lib.nfs_stat64 if follow else self.lib.nfs_lstat64
        self._check(call(self.ctx, path.encode(), ctypes.byref(st)), f"stat {path}")
        return st

    def statvfs(self, path: str) -> NfsStatvfs64:
        st = NfsStatvfs64()
        self._check(self.lib.nfs_statvfs64(self.ctx, path.encode(), ctypes.byref(st)), f"statvfs {path}")
        return st

    def listdir(self, path: str) -> list[tuple[str, int, int]]:
        """``(name, inode, mode)`` of each entry (the mode's file type bits are what ls needs)."""
        handle = ctypes.c_void_p()
        self._check(self.lib.nfs_opendir(self.ctx, path.encode(), ctypes.byref(handle)), f"opendir {path}")
        names = []
        try:
            while entry := self.lib.nfs_readdir(self.ctx, handle):
                item = entry.contents
                names.append((item.name.decode(errors="surrogateescape"), int(item.inode), int(item.mode)))
        finally:
            self.lib.nfs_closedir(self.ctx, handle)
        return names

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.nfs_open2(self.ctx, path.encode(), flags, mode, ctypes.byref(handle)), f"open {path}")
        assert handle.value is not None
        return handle.value

    def release(self, handle: int) -> None:
        self._check(self.lib.nfs_close(self.ctx, handle), "close")

    def pread(self, handle: int, size: int, offset: int) -> bytes:
        chunks = []
        while size > 0:
            buf = ctypes.create_string_buffer(min(size, self.readmax))
            got = self._check(self.lib.nfs_pread(self.ctx, handle, offset, len(buf), buf), "read")
            if got == 0:
                break
            chunks.append(buf.raw[:got])
            size, offset = size - got, offset + got
        return b"".join(chunks)

    def pwrite(self, handle: int, data: bytes, offset: int | None) -> int:
        """Write all of ``data`` at ``offset`` (None: at the end of the file, for O_APPEND)."""
        done = 0
        while done < len(data):
            piece = data[done : done + self.writemax]
            if offset is None:
                wrote = self._check(self.lib.nfs_write(self.ctx, handle, len(piece), piece), "append")
            else:
                wrote = self._check(self.lib.nfs_pwrite(self.ctx, handle, offset + done, len(piece), piece), "write")
            if wrote <= 0:
                raise NfsError(errno.EIO, "write: the server wrote nothing")
            done += wrote
        return done

    def fsync(self, handle: int) -> None:
        self._check(self.lib.nfs_fsync(self.ctx, handle), "fsync")

    def truncate(self, path: str, length: int, handle: int | None = None) -> None:
        if handle is not None:
            self._check(self.lib.nfs_ftruncate(self.ctx, handle, length), f"ftruncate {path}")
        else:
            self._check(self.lib.nfs_truncate(self.ctx, path.encode(), length), f"truncate {path}")

    def mkdir(self, path: str, mode: int) -> None:
        self._check(self.lib.nfs_mkdir2(self.ctx, path.encode(), mode), f"mkdir {path}")

    def rmdir(self, path: str) -> None:
        self._check(self.lib.nfs_rmdir(self.ctx, path.encode()), f"rmdir {path}")

    def unlink(self, path: str) -> None:
        self._check(self.lib.nfs_unlink(self.ctx, path.encode()), f"unlink {path}")

    def rename(self, old: str, new: str) -> None:
        self._check(self.lib.nfs_rename(self.ctx, old.encode(), new.encode()), f"rename {old} {new}")

    def setattr(self, path: str, attrs: Attrs) -> None:
        """Mode, owner, times: one SETATTR COMPOUND of our own (libnfs 4.0 needs a writable OPEN for them)."""
        try:
            setattr_path(self.server, f"{self.export}/{path}", attrs, self._creds, timeout=self._secs)
        except OSError as exc:
            raise NfsError(exc.errno or errno.ETIMEDOUT, f"setattr {path}: {exc}") from None

    @property
    def _secs(self) -> float:
        return self.timeout_ms / 1000

    def symlink(self, target: str, path: str) -> None:
        self._check(self.lib.nfs_symlink(self.ctx, target.encode(), path.encode()), f"symlink {path}")

    def readlink(self, path: str) -> str:
        out = ctypes.c_char_p()
        self._check(self.lib.nfs_readlink2(self.ctx, path.encode(), ctypes.byref(out)), f"readlink {path}")
        value = (out.value or b"").decode(errors="surrogateescape")
        ctypes.CDLL(None).free(out)
        return value


@dataclass
class OpenFile:
    """A file the kernel has open: enough to open it again by path on a new connection."""

    path: str
    flags: int
    mode: int
    creds: Creds
    handle: int | None = None
    conn: Connection | None = None
    sent: bool = False  # an OPEN was sent once: a create may have happened even if its reply was lost


@dataclass
class Session:
    """A hard mount of ``server``:``export``: calls block across server losses and reconnect by themselves.

    One connection per user (AUTH_SYS credentials, and an NFSv4 client and open-owner of its own), made on first
    use. A lost server drops them all; a stale state drops only the connection that saw it.
    """

    server: str
    export: str
    timeout_ms: int = CALL_TIMEOUT_MS
    retry_pause_s: float = 0.2
    reconnects: int = 0
    blocked_s: float = 0.0  # the longest time one call waited for the server
    on_reconnect: Callable[[Session], None] | None = None
    _conns: dict[Creds, Connection] = field(default_factory=dict)
    _opened: dict[int, OpenFile] = field(default_factory=dict)
    _lost: tuple[float, str] | None = None  # since when, and why, connections were dropped

    def connection(self, creds: Creds) -> Connection:
        """The user's connection, or a new one: retried until the server answers (``hard``)."""
        conn = self._conns.get(creds)
        if conn is not None:
            return conn
        attempts = 0
        while True:
            try:
                conn = Connection(self.server, self.export, self.timeout_ms)
                break
            except NfsError as exc:
                attempts += 1
                if attempts == 1 or attempts % 25 == 0:
                    log.warning("nfs %s:%s not answering (%s); still trying", self.server, self.export, exc)
                time.sleep(self.retry_pause_s)
        conn.as_user(creds)
        self._conns[creds] = conn
        if self._lost is not None:
            since, why = self._lost
            self._lost = None
            self.reconnects += 1
            log.warning(
                "nfs %s:%s reconnected (#%d) %.1f s after: %s",
                *(self.server, self.export, self.reconnects, time.monotonic() - since, why),
            )
            if self.on_reconnect is not None:
                self.on_reconnect(self)
        return conn

    def _drop(self, creds: Creds | None, reason: NfsError) -> None:
        """Close the connection of ``creds`` (None: every connection: the server is gone)."""
        for key in [creds] if creds is not None else list(self._conns):
            conn = self._conns.pop(key, None)
            if conn is not None:
                conn.close()
        if self._lost is None:
            self._lost = (time.monotonic(), str(reason))
            log.warning("nfs %s:%s connection dropped: %s", self.server, self.export, reason)

    def call(self, creds: Creds, operation: Callable[[Connection], T]) -> T:
        """``operation`` on the user's connection; retried on a new one while the server is lost."""
        started = time.monotonic()
        renewals = 0
        asked_to_wait = False
        try:
            while True:
                conn = self.connection(creds)
                try:
                    return operation(conn)
                except NfsError as exc:
                    verdict = self._judge(conn, exc, renewals)
                    if verdict == "answer":
                        raise
                    if verdict == "wait":
                        if not asked_to_wait:
                            log.warning("nfs %s:%s asks to wait: %s; sending it again", self.server, self.export, exc)
                        asked_to_wait = True
                        time.sleep(self.retry_pause_s)
                        continue
                    self._drop(creds if verdict == "stale" else None, exc)
                    renewals += verdict == "stale"
        finally:
            self.blocked_s = max(self.blocked_s, time.monotonic() - started)

    def _judge(self, conn: Connection, exc: NfsError, renewals: int) -> str:
        """``wait`` (the server asks for the call again later), ``lost`` (the server is unreachable), ``stale``
        (the connection's NFSv4 state is gone) or ``answer``."""
        status = exc.status
        if status in nfs4_status.WAIT:
            return "wait"  # as a kernel client does with NFS4ERR_GRACE and NFS4ERR_DELAY: for as long as it takes
        if status is not None:  # the server answered: its state is not ours any more, or it is its answer
            return "stale" if status in nfs4_status.RENEW and renewals < RENEWALS else "answer"
        if exc.errno not in TRANSPORT | STALE:
            return "answer"
        if exc.errno in TIMEOUTS:
            return "lost"  # a slow server (or a loaded machine) is waited for, as a kernel hard mount does
        try:
            conn.stat("/")  # the export's root: answers whenever the server does
        except NfsError:
            return "lost"
        # The server answers: a stale handle or a lost NFSv4 state is renewed by a fresh connection (new handles
        # by path, a new client and open owner); after RENEWALS of them, or for an EIO, it is the server's answer.
        return "stale" if exc.errno in STALE and renewals < RENEWALS else "answer"

    # --- files that stay open across reconnects ----------------------------------------------------------------
    def open(self, path: str, flags: int, mode: int, creds: Creds) -> int:
        """Open (or create) ``path``; returns a number for the kernel that survives reconnects."""
        entry = OpenFile(path, flags, mode, creds)
        created = bool(flags & os.O_CREAT) and not self._exists(path, creds)
        self.with_entry(entry, lambda conn, handle: None)
        if created:  # libnfs 4.0 creates with mode 0600 whatever it was asked
            self.call(creds, lambda conn: conn.setattr(path, Attrs(mode=mode)))
        # Only the first open creates or truncates; a reopen after a failover must not empty the file again, nor
        # create it (libnfs refuses a create of an existing file with EEXIST).
        entry.flags &= ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
        number = id(entry)
        self._opened[number] = entry
        return number

    def _exists(self, path: str, creds: Creds) -> bool:
        return self.call(creds, lambda conn: _exists_on(conn, path))

    def with_file(self, number: int, operation: Callable[[Connection, int], T]) -> T:
        """``operation(conn, handle)`` on an open file, reopening it by path after a reconnect."""
        return self.with_entry(self._opened[number], operation)

    def with_entry(self, entry: OpenFile, operation: Callable[[Connection, int], T]) -> T:
        def run(conn: Connection) -> T:
            if entry.conn is not conn or entry.handle is None:
                if entry.sent and entry.flags & os.O_CREAT and _exists_on(conn, entry.path):
                    # The OPEN that created it lost its confirmation (seen: OPEN_CONFIRM answered NFS4ERR_EXPIRED,
                    # then the retry failed with EEXIST): the file is this open's own, open it without creating.
                    entry.flags &= ~(os.O_CREAT | os.O_EXCL)
                entry.sent = True
                entry.handle = conn.open(entry.path, entry.flags, entry.mode)
                entry.conn = conn
            return operation(conn, entry.handle)

        return self.call(entry.creds, run)

    def rename_open(self, old: str, new: str) -> None:
        """Keep the paths of open files right after a rename (they are reopened by path)."""
        for entry in self._opened.values():
            if entry.path == old or entry.path.startswith(old + "/"):
                entry.path = new + entry.path[len(old) :]

    def close(self, number: int) -> None:
        entry = self._opened.pop(number)
        conn = entry.conn
        if entry.handle is not None and conn is not None and self._conns.get(entry.creds) is conn:
            try:
                conn.release(entry.handle)
            except NfsError as exc:  # the kernel's close cannot fail; the server forgets the state with the lease
                log.info("nfs close of %s: %s", entry.path, exc)

    def entry(self, number: int) -> OpenFile:
        return self._opened[number]


def _exists_on(conn: Connection, path: str) -> bool:
    try:
        conn.stat(path)
    except NfsError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True
