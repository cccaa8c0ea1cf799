"""The shipped units run the HA daemon and the witness with real-time round robin, reset on fork, and the lab starts
them the same way: a busy machine must not starve the heartbeats and lease renewals (docs/ha.md#scheduling), and
nothing the daemon starts may inherit the real-time priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from haoscar.ha.scheduling import UNITS, UnitScheduling, describe, launch_prefix, parse_unit, unit_scheduling

# Run under the lab's prefix: report the scheduling of the process itself, of a child process it starts (a
# service, rsync) and of a thread it creates.
CHILD = """
import json, os, subprocess, sys, threading
found = {}
def thread():
    found["thread"] = os.sched_getscheduler(0)
t = threading.Thread(target=thread); t.start(); t.join()
child = subprocess.run([sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
                       capture_output=True, text=True, check=True)
print(json.dumps({"self": os.sched_getscheduler(0), "priority": os.sched_getparam(0).sched_priority,
                  "child": int(child.stdout), "thread": found["thread"]}))
"""


def test_both_shipped_units_ask_for_round_robin_reset_on_fork() -> None:
    for unit in UNITS.values():
        assert unit_scheduling(unit) == UnitScheduling(policy="rr", priority=10, reset_on_fork=True), unit


def test_unit_settings_are_read_as_systemd_writes_them() -> None:
    text = "[Service]\nExecStart=/bin/true\nCPUSchedulingPolicy=fifo\nCPUSchedulingPriority=5\n"
    assert parse_unit(text) == UnitScheduling(policy="fifo", priority=5, reset_on_fork=False)
    assert parse_unit(text + "CPUSchedulingResetOnFork=true\n") == UnitScheduling("fifo", 5, True)
    assert parse_unit("[Service]\nExecStart=/bin/true\n") is None
    assert UnitScheduling("rr", 10, True).chrt() == ["chrt", "--rr", "--reset-on-fork", "10"]


def test_the_lab_starts_daemon_and_witness_like_the_units_and_nothing_else() -> None:
    assert launch_prefix("ha") == ["chrt", "--rr", "--reset-on-fork", "10"]
    assert launch_prefix("witness") == ["chrt", "--rr", "--reset-on-fork", "10"]
    assert launch_prefix("slurmd") == []


def test_the_daemon_is_real_time_and_what_it_starts_is_not() -> None:
    out = subprocess.run(
        [*launch_prefix("ha"), sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["self"] == os.SCHED_RR | os.SCHED_RESET_ON_FORK and seen["priority"] == 10
    # a service, rsync or the listener process, and the daemon's helper threads: normal priority
    assert seen["child"] == os.SCHED_OTHER
    assert seen["thread"] == os.SCHED_OTHER


def test_describe_says_what_the_scheduler_gives_a_process() -> None:
    proc = subprocess.Popen([*launch_prefix("witness"), "sleep", "30"])
    try:
        # chrt execs the program: the pid is the one that runs with the unit's scheduling
        deadline = 50
        while describe(proc.pid) != "SCHED_RR 10, reset on fork" and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.1"], check=True)
        assert describe(proc.pid) == "SCHED_RR 10, reset on fork"
    finally:
        proc.kill()
        proc.wait()
    assert describe(os.getpid()).startswith("SCHED_OTHER nice ")
