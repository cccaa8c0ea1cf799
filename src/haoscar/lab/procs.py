"""Finding, stopping and killing the processes of a lab host, by namespace membership (never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable

from haoscar.lab.nsenter import ns_inode


def netns_inode(netns_path: str) -> int | None:
    try:
        return os.stat(netns_path).st_ino
    except OSError:
        return None


def pids_in(pidns: Iterable[int], netns: Iterable[int]) -> set[int]:
    """Every process in one of the PID namespaces ``pidns`` or network namespaces ``netns`` (inodes)."""
    pid_set, net_set = set(pidns), set(netns)
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if (pid_set and ns_inode(entry, "pid") in pid_set) or (net_set and ns_inode(entry, "net") in net_set):
            found.add(int(entry))
    return found


def state_of(pid: int) -> str | None:
    """The one-letter process state from /proc/PID/stat (R, S, T, Z...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float = 5.0, reap: Callable[[], None] | None = None) -> set[int]:
    """Wait until every one of ``pids`` has exited (or is a zombie waiting for its parent); return the others.

    ``reap`` runs on every pass: it collects our own children, which a dying namespace init waits for.
    """
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left:
        if reap is not None:
            reap()
        left = {p for p in left if state_of(p) not in (None, "Z", "X")}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    return left


def stop_until_stable(find: Callable[[], set[int]], timeout: float = 5.0) -> set[int]:
    """SIGSTOP every process ``find`` returns, again and again, until no new one appears and all are stopped.

    A process may fork between the listing and the signal; repeating until a pass finds nothing new catches it.
    """
    stopped: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = find()
        fresh = pids - stopped
        signal_all(fresh, signal.SIGSTOP)
        stopped |= fresh
        states = {p: state_of(p) for p in pids}
        if not fresh and all(s in (None, "T", "t", "Z", "X") for s in states.values()):
            return pids
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes kept running after SIGSTOP: {sorted(states)}")
        time.sleep(0.002)


def stop_started(procs: Iterable[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """Stop processes this program started itself (by their Popen, so by pid): SIGTERM to all, then wait for each,
    SIGKILL after ``grace`` seconds. Safe to call twice."""
    started = list(procs)
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
