"""Which inodes some process holds open for writing: the kernel's answer through a lease, else /proc.

Used only for a new single-link name that saw no write yet when its batch is taken (a name made by ``link()`` of a
file written and closed under another name, as slurmctld saves its state): inotify reports no close for that name,
and only a writer's open file descriptor tells a finished file from one just created and still being written. One
scan answers for every candidate of a batch, and only such candidates trigger it (a file written through its own
name is settled by its IN_MODIFY / IN_CLOSE_WRITE events), so an untar does not scan /proc per file.

The first answer is the kernel's own (``still_written``): a read lease (``fcntl(F_SETLEASE, F_RDLCK)``) is refused
with EAGAIN while *any* process holds the inode open for writing, whatever its PID namespace, and also while a
shared writable mmap of it lives on after its descriptor was closed. The lease is given back at once; a writer
that opens the file in that instant waits for it (microseconds; one that opens with O_NONBLOCK gets EAGAIN), and
the lease-break signal is SIGURG, which is ignored by default, so it never kills the daemon. Where no lease can be
taken (a file system without leases, no CAP_LEASE, leases disabled by ``fs.leases-enable``) the /proc scan answers
(``held_for_writing``); that scan sees every writer only from the machine's initial PID namespace, so elsewhere (a
container, a lab host) it counts every candidate as held (names made by link() then wait for quiet).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from collections.abc import Iterable, Mapping

Inode = tuple[int, int]  # st_dev, st_ino
PROC = "/proc"
# The kernel's fixed inode number of the initial PID namespace (PROC_PID_INIT_INO). Only from there does /proc list
# every process of the machine (a parent namespace sees its children's processes, not the other way round).
INIT_PID_NS_INO = 0xEFFFFFFC


def sees_every_process(proc: str = PROC) -> bool:
    try:
        return os.stat(f"{proc}/self/ns/pid").st_ino == INIT_PID_NS_INO
    except OSError:
        return False


def _flags(pid: str, fd: str) -> int | None:
    try:
        with open(f"{PROC}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def held_for_writing(inodes: Iterable[Inode]) -> set[Inode]:
    """The ``inodes`` that a process of this PID namespace has open write-only or read-write."""
    wanted = set(inodes)
    found: set[Inode] = set()
    if not wanted:
        return found
    if not sees_every_process():
        # In a child PID namespace (a container, a lab host) a writer outside it is invisible here, and a file
        # being written would look finished: treat every candidate as still being written (the quiet wait).
        return wanted
    try:
        pids = [p for p in os.listdir(PROC) if p.isdigit()]
    except OSError:
        return wanted  # cannot tell: treat every candidate as still being written (today's quiet wait)
    for pid in pids:
        try:
            fds = os.listdir(f"{PROC}/{pid}/fd")
        except OSError:
            continue  # the process exited, or is a kernel thread
        for fd in fds:
            path = f"{PROC}/{pid}/fd/{fd}"
            try:
                if not os.readlink(path).startswith("/"):
                    continue  # sockets, pipes, anonymous inodes: cheap to skip without a stat
                st = os.stat(path)
            except OSError:
                continue
            inode = (st.st_dev, st.st_ino)
            if inode not in wanted or inode in found:
                continue
            flags = _flags(pid, fd)
            if flags is None or flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.add(inode)  # an unreadable fdinfo counts as a writer: holding back is the safe side
        if found == wanted:
            break
    return found


def _lease_says(path: str, inode: Inode) -> bool | None:
    """True when some process holds ``inode`` (at ``path``) open for writing or the name now holds another file
    (which is noted on its own), False when no process writes it, None when no lease can be taken here."""
    try:
        # O_NONBLOCK: a write lease someone else holds (Samba, NFS server) makes this open fail instead of wait.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # gone again: its deletion is noted; nothing to call finished
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != inode:
            return True
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)  # a lease break must not deliver SIGIO (it would kill us)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            return True if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def still_written(files: Mapping[Inode, str]) -> set[Inode]:
    """The ``files`` (inode -> a path of it) that some process holds open for writing: the kernel's lease check
    first, the /proc scan for those it cannot answer."""
    found: set[Inode] = set()
    unknown: set[Inode] = set()
    for inode, path in files.items():
        says = _lease_says(path, inode)
        if says is None:
            unknown.add(inode)
        elif says:
            found.add(inode)
    return found | held_for_writing(unknown)
