"""The writes inotify cannot see: files written through a file handle on a disconnected dentry (an NFS server).

inotify reports a file's event to the watch on its directory through the file's dentry. An NFS server (NFS-Ganesha's
VFS backend, the kernel's nfsd) opens files by handle (``open_by_handle_at``); when the kernel had evicted the
file's dentry, the handle comes back as a *disconnected* dentry, with no parent, and writes through it reach no
directory watch: measured on ext4 (``tests/unit/replication/test_fanwatch.py``), the write raises no inotify event
at all, so it would only be shipped by the next full pass (``replication_full_pass_s``, 600 s).

fanotify sees them: a mark on the whole file system (``FAN_MARK_FILESYSTEM``) gets every write to any inode of it,
whatever path, mount or handle the writer used. The group reports file handles (``FAN_REPORT_FID``) and, for a
file reached through a connected path, its directory and name too (``FAN_REPORT_DFID_NAME``): those are the writes
inotify already reports, skipped here without a system call. Only an event with no name (a disconnected dentry)
is resolved: the handle is opened (``O_PATH``), and its path is taken from ``/proc/self/fd`` when the kernel knows
it, else from a cache of earlier answers, else found by walking the trees of that file system for the inode (the
walk's lookup of the name also reconnects the dentry, so the writer's next events come through inotify again).
The change is then noted exactly as an inotify event would be (``write``/``file``, ``changes.ChangeSet.note``).

A queue overflow (``FAN_Q_OVERFLOW``) is reported like an inotify overflow: a full pass. The thread blocks in
``poll`` with no timeout: no wakeups while nothing is written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from haoscar.replication.changes import ChangeSet, Kind
from haoscar.replication.fhandle import (
    FAN_ATTRIB,
    FAN_CLASS_NOTIF,
    FAN_CLOEXEC,
    FAN_CLOSE_WRITE,
    FAN_MARK_ADD,
    FAN_MARK_FILESYSTEM,
    FAN_MODIFY,
    FAN_NONBLOCK,
    FAN_ONDIR,
    FAN_Q_OVERFLOW,
    FAN_REPORT_DFID_NAME,
    FAN_REPORT_FID,
    FidEvent,
    Handle,
    fanotify_init,
    fanotify_mark,
    open_by_handle,
    parse_events,
)

log = logging.getLogger(__name__)

MASK = FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB
INIT_FLAGS = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_FID | FAN_REPORT_DFID_NAME
READ_SIZE = 256 * 1024
CACHE_MAX = 65536
OUTSIDE_TTL_S = 60.0
Key = tuple[int, int]  # st_dev, st_ino


class HandleWatchUnavailable(Exception):
    """fanotify cannot watch these trees here; the message says why and what is lost."""


def kind_of(mask: int, mode: int) -> tuple[Kind, bool]:
    """What an event (or the union of one file's events in one read) means, as ``ChangeSet.note``'s kind and
    ``fresh``: the same as the inotify path (``watcher.classify``) for the same event."""
    if mask & FAN_CLOSE_WRITE:
        return "file", False
    if mask & FAN_MODIFY:
        return "write", False
    # An attribute change: a regular file may still be written (the writer check decides), others are complete.
    return ("write", True) if stat.S_ISREG(mode) else ("file", False)


@dataclass
class _Group:
    """One fanotify group per file system: its fd, an fd of the file system to open handles against, its trees."""

    fd: int
    mount_fd: int
    dev: int
    changes: list[ChangeSet] = field(default_factory=list)


def _why(exc: OSError, tree: str) -> str:
    reasons = {
        errno.EINVAL: f"this kernel ({os.uname().release}) lacks fanotify FAN_REPORT_DFID_NAME or FAN_MARK_FILESYSTEM"
        " (Linux 5.9 or later)",
        errno.EPERM: "fanotify needs CAP_SYS_ADMIN (run the replication as root)",
        errno.ENOSYS: "this kernel has no fanotify (CONFIG_FANOTIFY)",
        errno.ENODEV: f"the file system of {tree} has no file system id: fanotify cannot report its file handles",
        errno.EXDEV: f"{tree} is on a subvolume or an idmapped mount that fanotify cannot mark as a whole",
        errno.EOPNOTSUPP: f"the file system of {tree} cannot encode file handles",
    }
    return reasons.get(exc.errno or 0, f"{exc.strerror or exc}")


class HandleWatch:
    """``start()`` marks the file systems of ``changes``' trees; ``on_lost(why)`` is called on a queue overflow."""

    def __init__(self, changes: Sequence[ChangeSet], on_lost: Callable[[str], None]) -> None:
        self.on_lost = on_lost
        self._groups: dict[int, _Group] = {}
        self._names: dict[Key, str] = {}
        self._outside: dict[Key, float] = {}  # inode -> until when it is taken as outside the trees (monotonic)
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self._changes = list(changes)
        self.resolved = 0  # writes through disconnected dentries noted (status, tests)
        self.walks = 0

    def start(self) -> None:
        """Raises ``HandleWatchUnavailable`` (nothing left open) when a file system cannot be marked."""
        try:
            for change_set in self._changes:
                self._add(change_set)
        except HandleWatchUnavailable:
            self._close()
            raise
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="repl-fanotify", daemon=True)
        self._thread.start()

    def _add(self, change_set: ChangeSet) -> None:
        root = str(change_set.root)
        dev = os.stat(root).st_dev
        group = self._groups.get(dev)
        if group is None:
            try:
                fd = fanotify_init(INIT_FLAGS)
            except OSError as exc:
                raise HandleWatchUnavailable(_why(exc, root)) from exc
            try:
                fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, root)
                mount_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                os.close(fd)
                raise HandleWatchUnavailable(_why(exc, root)) from exc
            group = self._groups[dev] = _Group(fd, mount_fd, dev)
        group.changes.append(change_set)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._stop_w, b"x")
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def _close(self) -> None:
        for group in self._groups.values():
            for fd in (group.fd, group.mount_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._groups.clear()
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stop_r = self._stop_w = -1

    # -- the thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        by_fd = {group.fd: group for group in self._groups.values()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while True:
            ready = poller.poll()  # no timeout: nothing wakes this thread while nothing is written
            if any(fd == self._stop_r for fd, _ in ready):
                return
            for fd, _ in ready:
                group = by_fd.get(fd)
                if group is None:
                    continue
                try:
                    self.drain(group)
                except Exception as exc:  # never let the thread die silently: a full pass finds what was missed
                    log.exception("fanotify event handling failed")
                    self.on_lost(f"fanotify: {exc}")

    def drain(self, group: _Group) -> None:
        """Read what is queued, note the writes made through disconnected dentries."""
        wanted: dict[Handle, int] = {}
        for event in self._read(group.fd):
            if event.mask & FAN_Q_OVERFLOW:
                self.on_lost("fanotify queue overflow")
            elif not event.named and event.handle is not None and not event.mask & FAN_ONDIR:
                wanted[event.handle] = wanted.get(event.handle, 0) | event.mask
        if wanted:
            self._note(group, wanted)

    def _read(self, fd: int) -> Iterator[FidEvent]:
        while True:
            try:
                buf = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            if not buf:
                return
            yield from parse_events(buf)

    # -- from a handle to a path --------------------------------------------------------------------------------
    def _note(self, group: _Group, wanted: dict[Handle, int]) -> None:
        missing: dict[Key, tuple[int, int]] = {}  # key -> (mask, mode)
        for handle, mask in wanted.items():
            found = self._open(group, handle)
            if found is None:
                continue  # gone (ESTALE): its deletion reaches inotify through its directory
            key, mode, link = found
            path = self._known(group, key, link)
            if path is None and self._outside.get(key, 0.0) > time.monotonic():
                continue  # a walk found it in no tree a moment ago: a file this replication does not ship
            if path is None:
                missing[key] = (mask, mode)
            else:
                self._note_path(group, path, mask, mode)
        if missing:
            self.walks += 1
            for key, path in self._walk(group, set(missing)):
                self._note_path(group, path, *missing.pop(key))
            # Not in any tree (a file elsewhere on the file system written by handle): no walk for it for a while.
            # Were it moved into a tree, the rename by name connects its dentry, and its writes are named again.
            if len(self._outside) >= CACHE_MAX:
                self._outside.clear()
            self._outside.update(dict.fromkeys(missing, time.monotonic() + OUTSIDE_TTL_S))

    def _open(self, group: _Group, handle: Handle) -> tuple[Key, int, str] | None:
        try:
            fd = open_by_handle(group.mount_fd, handle, os.O_PATH)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            return None  # directories are always connected: inotify has them
        return (st.st_dev, st.st_ino), st.st_mode, link

    def _known(self, group: _Group, key: Key, link: str) -> str | None:
        """The path of ``key`` without a walk: the kernel's (a connected dentry), or the last one found."""
        for path in (link, self._names.get(key)):
            if path and os.path.isabs(path) and self._tree_of(group, path) is not None and _is(path, key):
                return path
        return None

    def _note_path(self, group: _Group, path: str, mask: int, mode: int) -> None:
        change_set = self._tree_of(group, path)
        if change_set is None:
            return
        kind, fresh = kind_of(mask, mode)
        change_set.note(kind, path, fresh=fresh)
        self.resolved += 1

    @staticmethod
    def _tree_of(group: _Group, path: str) -> ChangeSet | None:
        return next((c for c in group.changes if c.relative(path) is not None), None)

    def _walk(self, group: _Group, keys: set[Key]) -> Iterator[tuple[Key, str]]:
        """Find the names of inodes ``keys`` in the group's trees (inode numbers from the directory entries, so a
        walk costs a ``getdents`` per directory; each candidate is checked with ``lstat``, which also reconnects
        the disconnected dentry to its name)."""
        inodes = {ino for _dev, ino in keys}
        left = set(keys)
        for change_set in group.changes:
            stack = [str(change_set.root)]
            while stack and left:
                top = stack.pop()
                with contextlib.suppress(OSError), os.scandir(top) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if change_set.relative(entry.path) is not None:
                                stack.append(entry.path)
                        elif entry.inode() in inodes:
                            key = _key_of(entry.path)
                            if key in left:
                                left.discard(key)
                                self._remember(key, entry.path)
                                yield key, entry.path

    def _remember(self, key: Key, path: str) -> None:
        if len(self._names) >= CACHE_MAX:
            self._names.clear()
        self._names[key] = path


def _key_of(path: str) -> Key | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is(path: str, key: Key) -> bool:
    return _key_of(path) == key
