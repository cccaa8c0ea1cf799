"""Which inodes some process holds open for writing, read from /proc.

Used only for a new single-link name that saw no write yet when its batch is taken (a name made by ``link()`` of a
file written and closed under another name, as slurmctld saves its state): inotify reports no close for that name,
and only a writer's open file descriptor tells a finished file from one just created and still being written. One
scan answers for every candidate of a batch, and only such candidates trigger it (a file written through its own
name is settled by its IN_MODIFY / IN_CLOSE_WRITE events), so an untar does not scan /proc per file.

A process writing the inode only through a shared writable mmap after closing its descriptor is not seen here. A
daemon that is not in the machine's initial PID namespace cannot see every writer, so there every candidate
counts as held (names made by link() then wait for quiet, as before).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

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
