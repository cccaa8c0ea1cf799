"""Timing protection: a daemon that stalls must not look dead to its peer, nor miss its own lease deadline.

``apply_timing_protection`` optionally gives the daemon real-time scheduling (SCHED_RR, so a CPU hog cannot starve
the heartbeat) and locks its memory (mlockall, so it is never paged out under memory pressure). Either may be
refused (no CAP_SYS_NICE / CAP_IPC_LOCK, a container's limits): that is a warning, never a reason not to run.
``LoopLagMonitor`` measures how late the event loop wakes up (in the daemon: how late each heartbeat tick runs) and
warns when it is late, so that a false failover can be traced to its cause, and keeps the worst lag for
``haoscar ha status`` and the soak benchmark.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time
from collections import deque
from dataclasses import dataclass, field

from haoscar.events import EventBus
from haoscar.spec.models import HA

MCL_CURRENT = 1
MCL_FUTURE = 2


@dataclass
class TimingReport:
    realtime: str | None = None  # e.g. "SCHED_RR priority 10" when applied
    memory_locked: bool = False
    warnings: list[str] = field(default_factory=list)


def _set_realtime(priority: int) -> None:
    # Reset on fork, as the shipped unit's CPUSchedulingResetOnFork: what the daemon starts (dnsmasq, rsync,
    # slurmctld) and its worker threads run at normal priority; only the event loop's thread is real-time.
    os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(priority))


def _mlockall() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def apply_timing_protection(ha_cfg: HA, bus: EventBus | None = None) -> TimingReport:
    """Apply ``ha.realtime`` / ``ha.lock_memory`` to this process; failures become warnings (and events)."""
    report = TimingReport()
    if ha_cfg.realtime:
        try:
            _set_realtime(ha_cfg.realtime_priority)
            report.realtime = f"SCHED_RR priority {ha_cfg.realtime_priority}, reset on fork"
        except OSError as exc:
            report.warnings.append(
                f"real-time scheduling refused ({exc.strerror or exc}); running with normal priority, "
                "give the daemon CAP_SYS_NICE or run it as root"
            )
    if ha_cfg.lock_memory:
        try:
            _mlockall()
            report.memory_locked = True
        except OSError as exc:
            report.warnings.append(
                f"mlockall refused ({exc.strerror or exc}); memory may be paged out, "
                "raise RLIMIT_MEMLOCK (LimitMEMLOCK=infinity) or give CAP_IPC_LOCK"
            )
    if bus is not None:
        for warning in report.warnings:
            bus.event("timing.warning", warning, "warning")
        if report.realtime or report.memory_locked:
            bus.event("timing.applied", f"realtime={report.realtime or 'off'} memory_locked={report.memory_locked}")
    return report


class LoopLagMonitor:
    """How much later than asked the event loop woke (monotonic clock). A lag above ``threshold`` is a warning
    event, at most one per ``quiet`` seconds. The HA daemon feeds it the lateness of each heartbeat tick
    (``observe``); ``start`` runs a sleeper of ``interval`` seconds instead (20 wake-ups a second: ~0.3 % of a
    core on an idle head, which the daemon no longer pays)."""

    # ``status`` also gives the worst lag of the last WINDOW_S seconds, from one-second buckets, so that a reader
    # polling the status (the soak benchmark) sees the lag of a period of its choice rather than since start-up.
    WINDOW_S = 10

    def __init__(self, bus: EventBus, interval: float = 0.05, threshold: float = 0.1, quiet: float = 5.0) -> None:
        self.bus = bus
        self.interval = interval
        self.threshold = threshold
        self.quiet = quiet
        self._buckets: deque[tuple[int, float]] = deque(maxlen=self.WINDOW_S + 1)
        self.max_lag_ms = 0.0
        self.last_lag_ms = 0.0
        self.late_count = 0
        self.samples = 0
        self._last_warning = -float("inf")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="haoscar-loop-lag")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def observe(self, lag: float) -> None:
        """Record one measured lag (seconds); public so the daemon's tick can feed its own measurements too."""
        lag_ms = max(0.0, lag * 1000)
        now = time.monotonic()
        self.samples += 1
        self.last_lag_ms = lag_ms
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, max(self._buckets[-1][1], lag_ms))
        else:
            self._buckets.append((second, lag_ms))
        if lag <= self.threshold:
            return
        self.late_count += 1
        if now - self._last_warning >= self.quiet:
            self._last_warning = now
            self.bus.event(
                "loop.lag",
                f"event loop woke {lag_ms:.0f} ms late (threshold {self.threshold * 1000:.0f} ms); "
                "the daemon was stalled, not the peer",
                "warning",
                lag_ms=round(lag_ms, 1),
                max_lag_ms=round(self.max_lag_ms, 1),
            )

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval)
            self.observe(time.monotonic() - asked - self.interval)

    def window_max_ms(self, now: float | None = None) -> float:
        """The worst lag of the last ``WINDOW_S`` seconds (whole one-second buckets)."""
        since = int(time.monotonic() if now is None else now) - self.WINDOW_S
        return max((lag for second, lag in self._buckets if second > since), default=0.0)

    def status(self) -> dict[str, float | int]:
        now = time.monotonic()
        return {
            "max_lag_ms": round(self.max_lag_ms, 1),
            "last_lag_ms": round(self.last_lag_ms, 1),
            "window_s": self.WINDOW_S,
            "window_max_lag_ms": round(self.window_max_ms(now), 1),
            "threshold_ms": round(self.threshold * 1000, 1),
            "late_count": self.late_count,
            "samples": self.samples,
            "mono": round(now, 3),
        }
