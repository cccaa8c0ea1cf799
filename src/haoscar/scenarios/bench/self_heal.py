"""``haoscar bench self-heal``: how fast a killed service is back, and what an event costs the event loop.

A foreground service (``sleep``) is killed with SIGKILL ``runs`` times; each run measures, on the monotonic clock,
kill -> the monitor noticed (``resource.failed``) -> the service restarted in place and healthy
(``resource.restarted``). The expected detection time is up to one check ``interval``; the restart itself is the
part haoscar adds. ``emit_us`` is the mean time ``EventBus.emit`` holds the event loop with the log and store sinks
attached (the sinks' own work happens on their threads).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.events import Event, EventBus, JsonlStore, LogSink
from haoscar.ha.resources import ResourceGroup
from haoscar.ha.services import ServiceEnv, build_service
from haoscar.spec.models import Service


async def _one_run(group: ResourceGroup, bus: EventBus, seen: dict[str, float]) -> tuple[float, float]:
    pid = group.snapshot()[0].pid
    if pid is None:
        raise RuntimeError("the benchmark service is not running")
    seen.clear()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = killed + 30
    while "resource.restarted" not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError("the killed service was not restarted within 30 s")
        await asyncio.sleep(0.002)
    return (seen["resource.failed"] - killed) * 1000, (seen["resource.restarted"] - killed) * 1000


async def measure(runs: int, interval: float, note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-") as tmp:
        bus = EventBus("bench")
        seen: dict[str, float] = {}

        def stamp(event: Event) -> None:
            seen.setdefault(event.kind, time.monotonic())

        bus.subscribe(stamp)
        env = ServiceEnv(node="bench", state_dir=Path(tmp), bus=bus)
        spec = Service(name="victim", start="exec sleep 3600", interval=interval, max_restarts=runs + 1)
        group = ResourceGroup([build_service(spec, env)], bus)
        await group.start()
        group.start_monitoring()
        detect, healed = [], []
        try:
            for n in range(runs):
                note(f"run {n + 1}/{runs}")
                d, h = await _one_run(group, bus, seen)
                detect.append(d)
                healed.append(h)
        finally:
            await group.stop()
            bus.close()

        emit_bus = EventBus("bench")
        emit_bus.add_sink("log", LogSink(io.StringIO()))
        emit_bus.add_sink("store", JsonlStore(Path(tmp) / "events.jsonl"))
        count = 2000
        began = time.perf_counter()
        for n in range(count):
            emit_bus.emit(Event("bench", "bench", f"event {n}", "warning", {"n": n}))
        emit_us = (time.perf_counter() - began) / count * 1e6
        emit_bus.close()
    return {
        "runs": runs,
        "interval_s": interval,
        "detect_median_ms": round(statistics.median(detect), 1),
        "restart_median_ms": round(statistics.median(healed), 1),
        "restart_max_ms": round(max(healed), 1),
        "restart_only_median_ms": round(statistics.median(h - d for h, d in zip(healed, detect, strict=True)), 1),
        "emit_us": round(emit_us, 2),
    }
