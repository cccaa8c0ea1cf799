"""Processes of this host, seen through /proc, and the async primitives services are built from.

Every program a service starts runs in a session of its own, so the service owns a process group whose id is the
pid it started: stopping it signals that group (SIGTERM, then SIGKILL), which also reaches the children a shell
start line forks, and never anything the service did not start. A process that escapes the group with setsid is
found by the service's monitor after the stop (and then the stop reports failure, so the node gets fenced).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PROC = Path("/proc")
T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable`` with a timeout (TimeoutError). Unlike ``asyncio.wait_for`` before Python 3.12, it never
    swallows a cancellation that arrives as the awaitable completes, so a cancelled monitor really stops."""
    async with asyncio.timeout(seconds):
        return await awaitable


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    comm: str
    state: str
    pgrp: int
    argv0: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")  # a zombie has exited; it only waits to be reaped

    def named(self, name: str) -> bool:
        return name in (self.comm, Path(self.argv0).name, self.argv0)


def proc_is_ours() -> bool:
    """True when /proc shows this process's PID namespace, so its pids can be signalled from here.

    A lab host that entered a new PID namespace without remounting /proc would otherwise see (and kill!) the
    machine's processes by numbers that mean something else here.
    """
    try:
        return int(os.readlink(PROC / "self")) == os.getpid()
    except (OSError, ValueError):
        return False


def read_proc(pid: int, argv0: bool = True) -> ProcInfo | None:
    """One process's /proc entry. ``argv0=False`` reads only ``stat``: reading ``cmdline`` takes the target's
    mmap lock and can wait as long as that process holds it (a page fault on a stalled disk, a large mlock)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # comm may hold spaces and parentheses: it runs from the first "(" to the last ")".
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()
    if len(fields) < 3:
        return None
    first = ""
    if argv0:
        try:
            first = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            first = ""
    return ProcInfo(pid=pid, comm=comm, state=fields[0], pgrp=int(fields[2]), argv0=first)


def all_processes(argv0: bool = True) -> list[ProcInfo]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name), argv0)
            if info is not None:
                out.append(info)
    return out


def find_by_name(name: str) -> list[int]:
    """Live processes of this PID namespace called ``name`` (by comm, argv[0] or its base name)."""
    return sorted(p.pid for p in all_processes() if p.alive and p.named(name) and p.pid != os.getpid())


def pid_alive(pid: int) -> bool:
    info = read_proc(pid, argv0=False)
    return info is not None and info.alive


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process remains in process group ``pgid``."""
    if proc_is_ours():
        return any(p.pgrp == pgid and p.alive for p in all_processes(argv0=False))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


async def _wait_gone(pid: int, group: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        # /proc is read off the event loop: a scan must never delay a heartbeat.
        gone = not await asyncio.to_thread(group_alive if group else pid_alive, pid)
        if gone or time.monotonic() >= deadline:
            return gone
        await asyncio.sleep(0.02)


async def terminate(pid: int, term_timeout: float, kill_timeout: float, group: bool = True) -> bool:
    """SIGTERM, wait up to ``term_timeout``; SIGKILL, wait up to ``kill_timeout``. True if it is gone."""
    _signal(pid, signal.SIGTERM, group)
    if await _wait_gone(pid, group, term_timeout):
        return True
    _signal(pid, signal.SIGKILL, group)
    return await _wait_gone(pid, group, kill_timeout)


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed after the timeout
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.returncode is None:
            return "timed out"
        tail = self.output.strip().splitlines()[-1:] or [""]
        return f"exit status {self.returncode} {tail[0]}".strip()


async def run_shell(command: str, timeout: float, env: dict[str, str] | None = None) -> CommandResult:
    """Run a shell command line to completion; on timeout its whole process group is killed."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, _ = await within(proc.communicate(), timeout)
    except asyncio.CancelledError:
        _signal(proc.pid, signal.SIGKILL, group=True)  # a cancelled monitor must not leave its check running
        raise
    except TimeoutError:
        _signal(proc.pid, signal.SIGKILL, group=True)
        with contextlib.suppress(Exception):
            await within(proc.wait(), 2.0)
        return CommandResult(None, "")
    return CommandResult(proc.returncode, out.decode(errors="replace")[-4000:])


async def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start a long-running program in its own session, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


async def tcp_open(host: str, port: int, timeout: float) -> str | None:
    """None when something accepts a TCP connection on host:port within ``timeout``, else the reason."""
    try:
        _, writer = await within(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no answer on {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return None


async def stop_child(proc: asyncio.subprocess.Process | None, term_timeout: float, kill_timeout: float) -> bool:
    """Stop a service's own child (SIGTERM, then SIGKILL, to its process group) and reap it. True when it is gone
    (or was never running)."""
    if proc is None or proc.returncode is not None:
        return True
    gone = await terminate(proc.pid, term_timeout, kill_timeout)
    if gone:
        with contextlib.suppress(TimeoutError):
            await within(proc.wait(), kill_timeout)
    return gone
