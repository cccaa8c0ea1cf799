"""Running programs inside a lab host, and finding the processes that belong to one.

A command enters the host's network, UTS, mount and PID namespaces directly (``setns``), without an ``nsenter``
process in between: the child of ``subprocess`` *is* the host's process, so ``Popen.terminate()`` reaches it and a
frozen host does not leave a stopped ``nsenter`` behind. The PID namespace is joined by the calling thread just
around the fork (``setns`` on a PID namespace only affects later children, and only of that thread); the other
namespaces are joined in the forked child, which is single-threaded and so may change its mount namespace.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_fork_lock = threading.Lock()
# Processes started in hosts by this process, until reaped. A dying PID-namespace init waits until every process
# of its namespace is reaped, also those whose parent is outside (us): so we poll ours while a host goes down.
# Strong references: a Popen the caller dropped must still be reaped, or the host's init would never finish dying.
_spawned: set[subprocess.Popen[Any]] = set()


def reap_spawned() -> None:
    """Collect the exit status of every finished process this process started in a host (Popen keeps it)."""
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.discard(proc)


def register_spawned(proc: subprocess.Popen[Any]) -> None:
    """Reap ``proc`` with the host processes (a BMC's ipmi_sim runs in a host's network namespace only)."""
    _spawned.add(proc)


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def ns_inode(pid: int | str, kind: str) -> int | None:
    """The inode of a process's namespace of ``kind`` (net, pid, mnt...), or None if the process is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def pids_in_ns(kind: str, inodes: set[int]) -> list[int]:
    """Every process whose ``kind`` namespace is one of ``inodes``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ns_inode(entry, kind) in inodes:
            found.append(int(entry))
    return found


@dataclass(frozen=True)
class HostNamespaces:
    """Open handles on a host's namespaces, taken from its init process."""

    net: int
    uts: int
    mnt: int
    pid: int

    @classmethod
    def of(cls, init_pid: int) -> HostNamespaces:
        fds: list[int] = []
        try:
            for kind in ("net", "uts", "mnt", "pid"):
                fds.append(os.open(f"/proc/{init_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return cls(*fds)

    def close(self) -> None:
        for fd in (self.net, self.uts, self.mnt, self.pid):
            os.close(fd)

    def enter_in_child(self) -> None:
        """Run in the forked child before exec: join the host's network, UTS and mount namespaces."""
        setns(self.net, CLONE_NEWNET)
        setns(self.uts, CLONE_NEWUTS)
        setns(self.mnt, CLONE_NEWNS)
        os.chdir("/")


@contextmanager
def children_in_pidns(pidns_fd: int) -> Iterator[None]:
    """Make the calling thread's next children start inside the PID namespace ``pidns_fd``."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _fork_lock:
            setns(pidns_fd, CLONE_NEWPID)
            try:
                yield
            finally:
                setns(own, CLONE_NEWPID)
    finally:
        os.close(own)


def popen_in(init_pid: int, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` as a process of the host whose init is ``init_pid``."""
    spaces = HostNamespaces.of(init_pid)
    extra: Callable[[], object] | None = kwargs.pop("preexec_fn", None)

    def enter() -> None:
        spaces.enter_in_child()
        if extra is not None:
            extra()

    try:
        with children_in_pidns(spaces.pid):
            proc = subprocess.Popen(list(argv), preexec_fn=enter, **kwargs)  # noqa: PLW1509 - setns needs it
    finally:
        spaces.close()
    _spawned.add(proc)
    return proc
