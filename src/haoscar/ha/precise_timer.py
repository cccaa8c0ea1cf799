"""A loop timer that fires on time rather than up to a millisecond late.

asyncio waits in ``epoll_wait``, whose timeout has a resolution of one millisecond, rounded up (``selectors``):
a callback set for T runs between T and T + 1 ms, plus the loop's own work. In the lab the standby declared its
peer dead 0.2-1.3 ms after its dead time ended (docs/benchmarks.md, breakdown). Where that millisecond is on a
failover's critical path (the standby's dead time ending, the witness's answer at the end of a lease), the timer is
set ``EARLY_S`` early and its callback sleeps the rest in ``time.sleep`` (``clock_nanosleep``: tens of
microseconds off), so the loop is blocked for at most ``EARLY_S``, once per such deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

EARLY_S = 0.0015  # one epoll tick and a half: the wake-up lands before the deadline, not after it


def call_at_precisely(
    loop: asyncio.AbstractEventLoop, when: float, callback: Callable[..., Any], *args: Any
) -> asyncio.TimerHandle:
    """``loop.call_at(when, callback, *args)`` (``when`` on ``loop.time()``'s clock), run within tens of
    microseconds of ``when``, never before it; cancelled like any timer until it fires."""

    def fire() -> None:
        left = when - loop.time()
        if left > 0:
            time.sleep(left)
        callback(*args)

    return loop.call_at(max(loop.time(), when - EARLY_S), fire)
