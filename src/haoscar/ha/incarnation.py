"""The incarnation of a daemon's life: a persisted, fsync'd boot counter, never the wall clock.

A peer's replay window refuses packets of an incarnation older than the one it last saw (``ha/replay.py``). With
the wall clock as incarnation, a head restarted with its clock set back (NTP step, a bad RTC after a power loss)
was ignored as a replay of itself until its clock caught up. The counter in ``STATE_DIR/<name>/incarnation``
grows by one at every start and is on disk (file and directory fsync'd) before the first packet leaves, so each
life is larger than the previous one whatever the clock says.

A state directory without the file (a new installation, a reinstalled head) starts from the wall clock in
nanoseconds: the only value a fresh head can pick that is larger than what its peer may remember of a previous
life; from then on the clock no longer matters.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from haoscar.fsutil import atomic_write


def next_incarnation(directory: Path, wall_ns: Callable[[], int] | None = None) -> int:
    """Increment and persist the boot counter in ``directory/incarnation``; return the new value."""
    path = directory / "incarnation"
    previous: int | None = None
    try:
        value = json.loads(path.read_text()).get("incarnation")
        if isinstance(value, int) and value >= 0:
            previous = value
    except (OSError, ValueError, AttributeError):
        previous = None  # missing or unreadable: start from the clock (see the module docstring)
    current = previous + 1 if previous is not None else (wall_ns or time.time_ns)()
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"incarnation": current}) + "\n", mode=0o600, durable=True, compare=False)
    # The rename must survive a power loss too, or the next start could reuse this incarnation.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return current
