"""The CPU scheduling the shipped systemd units give the HA daemon and the witness, read from the units themselves.

A heartbeat daemon at the scheduler's normal priority is starved on a busy machine: in the soak benchmark, on a
2-core machine at load 20-45, the daemon's event loop spent 36 s of 80 waiting on the run queue (1.4 s running),
stalls of 150-480 ms made the fast profile's active head lose its lease (renewed every 0.1 s, believed for 0.25 s)
and one stall of 0.3 s made the standby declare it dead, take over and fence it. So the units run the daemon and
the witness as corosync and Heartbeat run theirs: real-time round robin (``CPUSchedulingPolicy=rr``, priority
10), with ``CPUSchedulingResetOnFork=yes`` so that what they start (dnsmasq, rsync, the status listener, slurmctld)
and the threads they create run at normal priority. The daemon's own work is a few ms per heartbeat interval; the
kernel's real-time throttling (95 % of each CPU by default) bounds a runaway one.

The lab starts its daemons the way the units do (``launch_prefix``: ``chrt`` with the unit's settings), so tests
and benchmarks run what is shipped; ``describe`` says what a running process really got.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import subprocess
from dataclasses import dataclass

# What each lab process is, and the shipped unit that starts it on a real cluster.
UNITS = {"ha": "haoscar-ha.service", "witness": "haoscar-witness.service"}
_POLICIES = {"rr": "--rr", "fifo": "--fifo", "other": "--other", "batch": "--batch", "idle": "--idle"}
_YES = ("1", "yes", "true", "on")


@dataclass(frozen=True)
class UnitScheduling:
    policy: str  # systemd's word: rr, fifo, other, batch, idle
    priority: int
    reset_on_fork: bool

    def chrt(self) -> list[str]:
        """The ``chrt`` command line prefix (util-linux) that starts a program with these settings."""
        return [
            "chrt",
            _POLICIES[self.policy],
            *(["--reset-on-fork"] if self.reset_on_fork else []),
            str(self.priority),
        ]


def parse_unit(text: str) -> UnitScheduling | None:
    """The ``CPUScheduling*`` settings of a unit file's text; None when it sets no policy."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("CPUScheduling"):
            settings[key.strip()] = value.strip()
    policy = settings.get("CPUSchedulingPolicy")
    if policy not in _POLICIES:
        return None
    return UnitScheduling(
        policy=policy,
        priority=int(settings.get("CPUSchedulingPriority", "0")),
        reset_on_fork=settings.get("CPUSchedulingResetOnFork", "no").lower() in _YES,
    )


def unit_scheduling(unit: str) -> UnitScheduling | None:
    """The scheduling of the shipped unit ``unit`` (a file in ``haoscar/data``)."""
    return parse_unit(importlib.resources.files("haoscar.data").joinpath(unit).read_text())


@functools.cache
def _chrt_works(argv: tuple[str, ...]) -> bool:
    """Whether this machine lets us start a process with ``argv`` (no CAP_SYS_NICE, a container's limits...)."""
    try:
        return subprocess.run([*argv, "true"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def launch_prefix(what: str) -> list[str]:
    """The command prefix that starts the lab's ``what`` (``ha``, ``witness``) with its unit's scheduling; empty
    for other programs, or when this machine refuses that scheduling (``describe`` then shows what ran)."""
    unit = UNITS.get(what)
    scheduling = unit_scheduling(unit) if unit is not None else None
    if scheduling is None:
        return []
    argv = scheduling.chrt()
    return argv if _chrt_works(tuple(argv)) else []


def describe(pid: int) -> str:
    """What the scheduler gives process ``pid`` (its main thread), e.g. ``SCHED_RR 10, reset on fork``."""
    try:
        policy = os.sched_getscheduler(pid)
        priority = os.sched_getparam(pid).sched_priority
    except OSError as exc:
        return f"unknown ({exc.strerror or exc})"
    reset = bool(policy & os.SCHED_RESET_ON_FORK)
    policy &= ~os.SCHED_RESET_ON_FORK
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_RR: "SCHED_RR", os.SCHED_FIFO: "SCHED_FIFO"}
    name = names.get(policy, f"policy {policy}")
    text = (
        f"{name} {priority}"
        if policy in (os.SCHED_RR, os.SCHED_FIFO)
        else f"{name} nice {os.getpriority(os.PRIO_PROCESS, pid)}"
    )
    return f"{text}, reset on fork" if reset else text
