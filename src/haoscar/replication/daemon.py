"""``haoscar repl run``: replication on its own, one role, until SIGTERM (the HA daemon drives the same manager)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from haoscar.events import EventBus
from haoscar.replication.config import repl_config
from haoscar.replication.manager import ReplicationManager
from haoscar.spec.models import HA, ClusterSpec

BusFactory = Callable[[HA, str, Path], EventBus]


async def run_replication(
    spec: ClusterSpec,
    node: str,
    state_dir: Path,
    role: str,
    *,
    key_file: Path | None = None,
    catch_up: bool = False,
    make_bus: BusFactory | None = None,
) -> int:
    """Returns the exit status: 0 after SIGTERM, 1 when a catch-up failed.

    ``make_bus`` builds the event bus (the CLI passes ``haoscar.ha.alerts.daemon_bus``, which adds the spec's
    alerts; this package sits below ``haoscar.ha`` and cannot); without it, events are only logged and stored."""
    name = repl_config(spec, node, state_dir, key_file).node
    bus = make_bus(spec.ha, name, state_dir) if make_bus is not None else EventBus.from_config(name, state_dir)
    manager = ReplicationManager(spec, node, state_dir, bus, key_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if role == "source":
            await manager.start_source(manager.cfg.peer)
        elif catch_up:
            report = await manager.catch_up_from(manager.cfg.peer)
            if report.error is not None:
                print(f"catch-up failed: {report.error}", file=sys.stderr)
                return 1
        else:
            await manager.start_target()
        await stop.wait()
        return 0
    finally:
        with contextlib.suppress(Exception):
            await manager.stop()
        bus.close(5.0)
