"""``call_at_precisely``: a loop timer for a failover's critical deadlines (``ha/precise_timer.py``)."""

from __future__ import annotations

import asyncio

from haoscar.ha.precise_timer import EARLY_S, call_at_precisely


def test_it_runs_its_callback_with_its_arguments_never_before_the_deadline() -> None:
    async def scenario() -> list[tuple[float, float, str]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[float, float, str]] = []
        for delay in (0.0, 0.0005, EARLY_S, 0.004, 0.02):
            when = loop.time() + delay
            call_at_precisely(loop, when, lambda w, tag: fired.append((w, loop.time(), tag)), when, f"{delay}")
        await asyncio.sleep(0.05)
        return fired

    fired = asyncio.run(scenario())
    assert sorted(tag for _w, _t, tag in fired) == sorted(f"{d}" for d in (0.0, 0.0005, EARLY_S, 0.004, 0.02))
    assert all(ran >= when for when, ran, _tag in fired)


def test_a_cancelled_timer_never_fires() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        handle = call_at_precisely(loop, loop.time() + 0.01, fired.append, "late")
        handle.cancel()
        await asyncio.sleep(0.03)
        return fired

    assert asyncio.run(scenario()) == []
