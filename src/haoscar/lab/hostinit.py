"""PID 1 of a lab host: set the host name, mount its copy-on-write and private directories, then reap orphans.

Run as ``python3 -I -S hostinit.py HOSTNAME [--cow DIR:UPPER:WORK]... SRC:DST...`` inside fresh mount, UTS and PID
namespaces (made by ``unshare``). Each ``--cow`` mounts an overlay on DIR (lower: the machine's DIR; upper and work
from the lab, see lab/hostfs.py), then each ``SRC:DST`` binds a private directory, on top of the overlays. It uses
the standard library only, so the system interpreter starts it quickly. It prints ``ready`` on stdout once the host
is set up, then lets go of stdout so its starter may exit. A PID namespace's init must
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


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    kind = fstype.encode() if fstype else None
    options = data.encode() if data is not None else None
    if libc.mount(source.encode(), target.encode(), kind, flags, options) != 0:
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


def _parse(args: list[str]) -> tuple[list[str], list[str]]:
    cows, binds = [], []
    while args:
        arg = args.pop(0)
        if arg == "--cow":
            cows.append(args.pop(0))
        else:
            binds.append(arg)
    return cows, binds


def _overlay(spec: str) -> None:
    target, upper, work = spec.split(":")
    # The lower is resolved before the overlay covers ``target``: the machine's directory itself.
    _mount("overlay", target, "overlay", 0, f"lowerdir={target},upperdir={upper},workdir={work}")


def main(argv: list[str]) -> None:
    hostname, *rest = argv
    cows, binds = _parse(rest)
    socket.sethostname(hostname)
    _fresh_sysfs()
    # Hold every source before mounting any: once /var/lib is an overlay and /var/lib/haoscar is covered, a source
    # below the machine's own /var/lib/haoscar (the default state directory) would no longer be reachable by its
    # path, or would be reached through the host's copy-on-write layer instead of the machine's directory.
    held = []
    for pair in binds:
        source, target = pair.split(":", 1)
        held.append((os.open(source, os.O_PATH | os.O_DIRECTORY), source, target))
    for spec in cows:
        _overlay(spec)
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
