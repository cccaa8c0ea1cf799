"""Timing protection: loop-lag warnings, and real-time scheduling / locked memory applied or warned about."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from haoscar.events import EventBus
from haoscar.ha.timing import LoopLagMonitor


def test_lags_are_counted_and_warned_about_once_per_quiet_period() -> None:
    # The bookkeeping on given lags (no real clock: a loaded test machine adds stalls of its own).
    bus = EventBus("head1")
    monitor = LoopLagMonitor(bus, interval=0.02, threshold=0.1, quiet=60)
    for lag in (0.004, 0.3, 0.002, 0.2, 0.001):  # on time, a stall, on time, a second stall in the quiet period
        monitor.observe(lag)
    warnings = [e for e in bus.recent(100) if e.kind == "loop.lag"]
    assert len(warnings) == 1
    assert warnings[0].severity == "warning" and warnings[0].data["lag_ms"] == 300.0
    assert monitor.samples == 5 and monitor.late_count == 2 and monitor.max_lag_ms == 300.0
    status = monitor.status()
    assert status["max_lag_ms"] == 300.0
    assert status["window_max_lag_ms"] == 300.0  # the stalls are recent
    assert status["last_lag_ms"] == 1.0  # the loop woke on time again after them
    # once the stalls are older than the window, only the maximum since start remembers them
    assert monitor.window_max_ms(time.monotonic() + monitor.WINDOW_S + 1) == 0.0


def test_a_stalled_event_loop_is_measured() -> None:
    bus = EventBus("head1")
    monitor = LoopLagMonitor(bus, interval=0.02, threshold=0.1, quiet=60)

    async def scenario() -> None:
        monitor.start()
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # the daemon stalls: blocking work on the loop, a CPU hog, a VM pause
        await asyncio.sleep(0.1)
        await monitor.stop()

    asyncio.run(scenario())
    assert monitor.max_lag_ms >= 250 and monitor.late_count >= 1
    assert [e.kind for e in bus.recent(100)].count("loop.lag") == 1


PROBE = """
import json, os
from haoscar.ha.timing import apply_timing_protection
from haoscar.spec.models import HA
report = apply_timing_protection(HA(realtime=True, realtime_priority=7, lock_memory=True))
policy = os.sched_getscheduler(0)
vmlck = [l for l in open('/proc/self/status') if l.startswith('VmLck:')][0].split()[1]
print(json.dumps({"realtime": report.realtime, "locked": report.memory_locked, "warnings": report.warnings,
                  "policy_rr": policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR,
                  "reset_on_fork": bool(policy & os.SCHED_RESET_ON_FORK),
                  "priority": os.sched_getparam(0).sched_priority,
                  "vmlck_kb": int(vmlck)}))
"""


def test_realtime_and_mlockall_are_applied_or_reported() -> None:
    # In a child process: SCHED_RR and mlockall must not leak into the test runner.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    # The tests run as root (make test): both are granted, and nothing is warned about.
    assert result["realtime"] == "SCHED_RR priority 7, reset on fork"
    assert result["policy_rr"] and result["reset_on_fork"] and result["priority"] == 7
    assert result["locked"] and result["vmlck_kb"] > 0
    assert result["warnings"] == []


def test_nothing_is_applied_by_default() -> None:
    probe = PROBE.replace("HA(realtime=True, realtime_priority=7, lock_memory=True)", "HA()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result == {
        "realtime": None,
        "locked": False,
        "warnings": [],
        "policy_rr": False,
        "reset_on_fork": False,
        "priority": 0,
        "vmlck_kb": 0,
    }
