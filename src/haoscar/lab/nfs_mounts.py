"""Userspace NFS mounts in lab hosts: start, find, stop the ``nfs_fuse`` process of each (docs/lab.md).

``Lab.mount_nfs(host, server, export, mountpoint)`` calls ``mount`` here: it starts ``python -m
haoscar.lab.nfs_fuse`` as a process of the host (its network, mount and PID namespaces), waits until the FUSE
mount is in the host's mount table, records it in ``LAB_DIR/nfs-mounts.json`` and returns the process's pid (as
the machine sees it). ``unmount`` runs ``umount`` in the host, and the process exits; ``lab down`` unmounts every
mount first. A crash of the host kills the process like any other; ``restore`` does not mount it again (no fstab).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

from haoscar.errors import UserError

MOUNT_TIMEOUT_S = 30.0
FSTYPE = "fuse.haoscar-nfs"


class NfsLab(Protocol):
    """What of a ``Lab`` the mounts use (lab.lab imports this module, so not the class itself)."""

    dir: Path

    def popen(self, host: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]: ...

    def exec(
        self, host: str, argv: list[str], *, timeout: float = ..., check: bool = ..., input: str | None = ...
    ) -> subprocess.CompletedProcess[str]: ...

    def host_dir(self, host: str) -> Path: ...

    def alive(self, host: str) -> bool: ...


@dataclass(frozen=True)
class NfsMountRecord:
    host: str
    mountpoint: str
    server: str
    export: str
    pid: int
    status: str  # the status file, as a path inside the host
    log: str  # the process's output, as a path on the machine


_children: dict[int, subprocess.Popen[Any]] = {}  # started by this process: waited for, so none stays a zombie


def _records_file(lab: NfsLab) -> Path:
    return lab.dir / "nfs-mounts.json"


def records(lab: NfsLab) -> list[NfsMountRecord]:
    path = _records_file(lab)
    if not path.exists():
        return []
    return [NfsMountRecord(**item) for item in json.loads(path.read_text())]


def _save(lab: NfsLab, items: list[NfsMountRecord]) -> None:
    _records_file(lab).write_text(json.dumps([asdict(r) for r in items], indent=2) + "\n")


def _check(server: str, export: str, mountpoint: str) -> None:
    try:
        IPv4Address(server)
    except ValueError:
        raise UserError(f"server {server!r} must be an IPv4 address (the heads' private alias)") from None
    for field, value in (("export", export), ("mountpoint", mountpoint)):
        if not value.startswith("/") or "\0" in value or re.search(r"(^|/)\.\.?(/|$)", value):
            raise UserError(f"{field} {value!r} must be an absolute path without . or .. components")


def mount(
    lab: NfsLab, host: str, server: str, export: str, mountpoint: str, *, timeout: float = MOUNT_TIMEOUT_S
) -> int:
    """Mount ``server``:``export`` on ``mountpoint`` inside ``host``; returns the pid of the FUSE process."""
    _check(server, export, mountpoint)
    if any(r.host == host and r.mountpoint == mountpoint for r in records(lab)):
        raise UserError(f"{host} already has an NFS mount on {mountpoint}; unmount it first")
    slug = mountpoint.strip("/").replace("/", "-") or "root"
    status = f"/run/haoscar/nfs/{slug}.json"
    (lab.host_dir(host) / status.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    log = lab.dir / f"nfs-{host}-{slug}.log"
    argv = [sys.executable, "-m", "haoscar.lab.nfs_fuse", server, export, mountpoint, "--status", status]
    with open(log, "ab") as out:
        proc = lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    _children[proc.pid] = proc
    try:
        _wait_mounted(proc, mountpoint, timeout, log)
    except BaseException:
        _stop_pid(proc.pid, grace=0.0)
        raise
    _save(lab, [*records(lab), NfsMountRecord(host, mountpoint, server, export, proc.pid, status, str(log))])
    return proc.pid


def _wait_mounted(proc: subprocess.Popen[Any], mountpoint: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not is_mounted(proc.pid, mountpoint):
        if proc.poll() is not None:
            raise RuntimeError(f"the NFS mount of {mountpoint} failed (exit {proc.returncode}): {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the NFS mount of {mountpoint} did not appear within {timeout:g} s: {_tail(log)}")
        time.sleep(0.1)


def is_mounted(pid: int, mountpoint: str) -> bool:
    """Whether the mount namespace of ``pid`` has the FUSE NFS mount on ``mountpoint``."""
    try:
        table = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == mountpoint and f" - {FSTYPE} " in line:
            return True
    return False


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace").strip()[-800:] or "(no output)"
    except OSError:
        return "(no output)"


def status(lab: NfsLab, host: str, mountpoint: str) -> dict[str, Any]:
    """The mount's status file: ``reconnects``, ``blocked_s``, ``pid``... (written by the FUSE process)."""
    record = _record(lab, host, mountpoint)
    found: dict[str, Any] = json.loads((lab.host_dir(host) / record.status.lstrip("/")).read_text())
    return found


def describe(lab: NfsLab, host: str, mountpoint: str) -> str:
    """How the mount's FUSE process is doing, for a failure's story: running (with its reconnects), or how it ended
    (its exit status or the signal that killed it, when this process started it) and the tail of its log."""
    record = _record(lab, host, mountpoint)
    proc = _children.get(record.pid)
    if _running(record.pid, proc):
        try:
            seen = status(lab, host, mountpoint)
            state = f"running, {seen['reconnects']} reconnects, longest wait {seen['blocked_s']} s"
        except (OSError, ValueError, KeyError):
            state = "running"
    elif proc is not None and proc.returncode is not None and proc.returncode < 0:
        state = f"killed by {signal.Signals(-proc.returncode).name}"
    elif proc is not None:
        state = f"exited {proc.returncode}"
    else:
        state = "gone"
    return f"{host}:{mountpoint} FUSE pid {record.pid} {state}; its log: {_tail(Path(record.log))[-300:]}"


def _record(lab: NfsLab, host: str, mountpoint: str) -> NfsMountRecord:
    mine = [r for r in records(lab) if r.host == host]
    for record in mine:
        if record.mountpoint == mountpoint:
            return record
    known = ", ".join(r.mountpoint for r in mine) or "none"
    raise UserError(f"{host} has no NFS mount on {mountpoint}; its NFS mounts: {known}")


def unmount(lab: NfsLab, host: str, mountpoint: str) -> None:
    """Detach the mount in the host, then end the FUSE process (SIGKILLed if it is still there after 5 s).

    The detach is ``umount2(MNT_DETACH)`` called directly, which sends the FUSE process no request: ``umount(8)``
    stats the mount point first, and that would block, as every call on a hard mount does, while the server is
    away; the unmount must work then too.
    """
    record = _record(lab, host, mountpoint)
    if lab.alive(host) and is_mounted(record.pid, mountpoint):
        code = f"import ctypes, sys; sys.exit(ctypes.CDLL(None).umount2({mountpoint.encode()!r}, 2))"
        lab.exec(host, [sys.executable, "-c", code], check=False, timeout=30)
    _stop_pid(record.pid, grace=5.0)
    _save(lab, [r for r in records(lab) if r != record])


def unmount_all(lab: NfsLab) -> None:
    """Every mount of the lab (``lab down``): each FUSE process is SIGKILLed, which aborts its connection, so no
    process of the host stays blocked on the mount (a blocked ``umount`` could not even be killed)."""
    for record in records(lab):
        with contextlib.suppress(Exception):
            _stop_pid(record.pid, grace=0.0)
    _records_file(lab).unlink(missing_ok=True)


def _stop_pid(pid: int, grace: float) -> None:
    """Wait up to ``grace`` seconds for ``pid`` to exit, then SIGKILL it (only the FUSE process we started)."""
    proc = _children.pop(pid, None)
    deadline = time.monotonic() + grace
    while _running(pid, proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(pid, proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _running(pid: int, proc: subprocess.Popen[Any] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:  # started by another process: make sure the pid is still that FUSE process, not a reused number
        return b"haoscar.lab.nfs_fuse" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
