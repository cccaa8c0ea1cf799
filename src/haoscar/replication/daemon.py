"""``haoscar repl run``: replication on its own, one role, until SIGTERM (the HA daemon drives the same manager)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from haoscar.events import EventBus
from haoscar.replication.config import repl_config
from haoscar.replication.manager import ReplicationManager
from haoscar.spec.models import ClusterSpec


async def run_replication(
    spec: ClusterSpec,
    node: str,
    state_dir: Path,
    role: str,
    *,
    key_file: Path | None = None,
    catch_up: bool = False,
) -> int:
    """Returns the exit status: 0 after SIGTERM, 1 when a catch-up failed."""
    bus = EventBus.from_config(spec.ha, repl_config(spec, node, state_dir, key_file).node, state_dir)
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
