"""PID 1 of a lab host: set the host name, bind the host's private directories, then reap orphans forever.

Run as ``python3 -I -S hostinit.py HOSTNAME SRC:DST...`` inside fresh mount, UTS and PID namespaces (made by
``unshare``). It uses the standard library only, so the system interpreter starts it quickly. It prints ``ready``
on stdout once the host is set up, then lets go of stdout so its starter may exit. A PID namespace's init must
``waitpid(-1)``: every orphan of the host becomes its child, and an init that never reaps fills the host with
zombies. Killing this process (SIGKILL from outside) makes the kernel kill every process of the host: a power loss.
"""

import ctypes
import os
import signal
import socket
import sys
import tempfile

MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    kind = fstype.encode() if fstype else None
    if libc.mount(source.encode(), target.encode(), kind, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _fresh_sysfs() -> None:
    """A sysfs of the host's own network namespace on /sys (so /sys/class/net lists its links), keeping the
    machine's cgroup mounts under it: ``ip netns exec`` loses those, and daemons such as slurmd need them."""
    staging = tempfile.mkdtemp(prefix=".haoscar-sysfs-")
    try:
        _mount("sysfs", staging, "sysfs", 0)
        if os.path.ismount("/sys/fs/cgroup"):
            _mount("/sys/fs/cgroup", os.path.join(staging, "fs/cgroup"), None, MS_BIND | MS_REC)
        _mount(staging, "/sys", None, MS_MOVE)
    finally:
        os.rmdir(staging)


def _reap_forever() -> None:
    # SIGCHLD stays blocked so that one arriving between a reaping pass and sigwait is kept pending, not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        signal.sigwait({signal.SIGCHLD})


def main(argv: list[str]) -> None:
    hostname, *binds = argv
    socket.sethostname(hostname)
    _fresh_sysfs()
    # Hold every source before mounting any: once /var/lib/haoscar is covered, a source below the machine's own
    # /var/lib/haoscar (the default state directory) would no longer be reachable by its path.
    held = []
    for pair in binds:
        source, target = pair.split(":", 1)
        held.append((os.open(source, os.O_PATH | os.O_DIRECTORY), source, target))
    for fd, _source, target in held:
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
        os.close(fd)
    os.chdir("/")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    _reap_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
