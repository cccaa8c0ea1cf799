"""Running dnsmasq with the rendered configuration: start, reload (SIGHUP), stop, status.

haoscar only ever signals the dnsmasq it started: the pid comes from the pid file named in our own config, and
the process behind it must be a dnsmasq whose command line names that config. A stale pid file (the process died,
the pid was reused) is therefore ignored, never signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.errors import UserError
from haoscar.provision.netboot_files import NetbootPaths


@dataclass(frozen=True)
class Lease:
    expires: int
    mac: str
    ip: str
    hostname: str


@dataclass(frozen=True)
class DhcpStatus:
    running: bool
    pid: int | None
    config: str
    interface: str | None
    leases: list[Lease] = field(default_factory=list)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def running_pid(paths: NetbootPaths) -> int | None:
    """The pid of the dnsmasq running our config, or None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name != "dnsmasq" or f"--conf-file={paths.conf}" not in argv:
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None
    return None if state == "Z" else pid


def reload(paths: NetbootPaths) -> int | None:
    """SIGHUP our running dnsmasq so it re-reads hosts.d; returns its pid (None when not running)."""
    pid = running_pid(paths)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
    return pid


def _dnsmasq() -> str:
    exe = shutil.which("dnsmasq") or next((p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if Path(p).exists()), None)
    if exe is None:
        raise UserError("dnsmasq is not installed; install the Debian package dnsmasq-base")
    return exe


def config_interface(paths: NetbootPaths) -> str | None:
    try:
        for line in paths.conf.read_text().splitlines():
            if line.startswith("interface="):
                return line.split("=", 1)[1]
    except FileNotFoundError:
        return None
    return None


def start(paths: NetbootPaths) -> int:
    """Start dnsmasq on our config (it daemonizes and writes its pid file); returns its pid."""
    pid = running_pid(paths)
    if pid is not None:
        return pid
    if not paths.conf.exists():
        raise UserError(f"{paths.conf} does not exist; run haoscar dhcp configure first")
    proc = subprocess.run(
        [_dnsmasq(), f"--conf-file={paths.conf}", f"--log-facility={paths.log_file}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(
            f"dnsmasq did not start: {message[-1] if message else f'exit status {proc.returncode}'}",
            [f"config: {paths.conf}", f"log: {paths.log_file}"],
        )
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pid = running_pid(paths)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise UserError(f"dnsmasq started but wrote no pid file {paths.pid_file}; see {paths.log_file}")


def stop(paths: NetbootPaths, timeout: float = 5.0) -> int | None:
    """SIGTERM our dnsmasq and wait for it to go; returns the pid it had (None when it was not running)."""
    pid = running_pid(paths)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(paths) == pid:
        time.sleep(0.02)
    if running_pid(paths) == pid:
        os.kill(pid, signal.SIGKILL)
    paths.pid_file.unlink(missing_ok=True)
    return pid


def ensure_running(paths: NetbootPaths, *, main_changed: bool, reloaded: bool) -> tuple[int, str]:
    """After a netboot sync: start dnsmasq when it is not running, restart it when its main config changed (a
    SIGHUP does not re-read that), else leave it as the sync left it. Returns its pid and what happened."""
    before = running_pid(paths)
    if before is None:
        return start(paths), "started"
    if main_changed:
        stop(paths)
        return start(paths), "restarted"
    return before, "reloaded" if reloaded else "unchanged"


def read_leases(paths: NetbootPaths) -> list[Lease]:
    """dnsmasq's lease file: ``EXPIRY MAC IP HOSTNAME CLIENT-ID`` per line."""
    leases: list[Lease] = []
    try:
        text = paths.lease_file.read_text()
    except FileNotFoundError:
        return leases
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit():
            leases.append(Lease(int(parts[0]), parts[1], parts[2], "" if parts[3] == "*" else parts[3]))
    return leases


def status(paths: NetbootPaths) -> DhcpStatus:
    pid = running_pid(paths)
    return DhcpStatus(
        running=pid is not None,
        pid=pid,
        config=str(paths.conf),
        interface=config_interface(paths),
        leases=read_leases(paths),
    )
