"""Wiring of a head's daemon and of the witness from a spec: what ``haoscar ha run`` and ``haoscar witness run``
do after parsing their options."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.events import EventBus
from haoscar.ha.alerts import daemon_bus
from haoscar.ha.api import local_addresses
from haoscar.ha.apiserver import ApiProcess, SharedListener, announce_shared, forget_shared, spawn
from haoscar.ha.config import node_config
from haoscar.ha.control import control_path
from haoscar.ha.daemon import Daemon
from haoscar.ha.incarnation import next_incarnation
from haoscar.ha.keyset import KeySet
from haoscar.ha.lease import LeaseTable
from haoscar.ha.replication_glue import make_glue
from haoscar.ha.resources import ResourceGroup
from haoscar.ha.timing import LoopLagMonitor, apply_timing_protection
from haoscar.ha.witness import Witness, serve
from haoscar.keyring import WITNESS_PURPOSES
from haoscar.spec.models import ClusterSpec


class _Provider:
    """The status API's view of the daemon, which exists only after the resource group was built."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None

    def _get(self) -> Daemon:
        if self.daemon is None:
            raise RuntimeError("the daemon is not running yet")
        return self.daemon

    def status(self) -> dict[str, Any]:
        return self._get().status()

    async def switchover(self) -> Any:
        return await self._get().switchover()

    async def failback(self) -> Any:
        return await self._get().failback()

    async def takeover(self, force: bool) -> Any:
        return await self._get().takeover(force)


def _key_path(spec: ClusterSpec, key_file: Path | None) -> Path:
    return key_file or Path(spec.ha.key_file)


async def run_head(spec: ClusterSpec, node: str, state_dir: Path, key_file: Path | None = None) -> None:
    cfg = node_config(spec, node, key_file)
    key = KeySet.load(cfg.key_file, ("heartbeat", "lease"))  # replication loads its own (replication.key)
    state_dir.mkdir(parents=True, exist_ok=True)
    bus = daemon_bus(spec.ha, cfg.name, state_dir)
    apply_timing_protection(spec.ha, bus)
    provider = _Provider()
    # The status listener process also serves the token API (status-api services built now wait for it).
    shared = announce_shared(control_path(state_dir))
    resources = ResourceGroup.from_spec(spec, cfg.name, state_dir, bus, provider)
    # Replication follows the role (ha/replication_glue.py); its failures are events, never a reason to stop.
    replication = make_glue(spec, cfg.name, state_dir, bus, cfg.key_file)
    daemon = Daemon(cfg, key=key, state_dir=state_dir, bus=bus, resources=resources, replication=replication)
    provider.daemon = daemon
    lag = LoopLagMonitor(bus, threshold=spec.ha.loop_lag_warning)
    # Fed by the daemon's heartbeat tick (not started: no timer of its own); its figures go into the status.
    daemon.loop_lag = lag
    # Started beside the daemon, not before it: the listener process's start (~0.2 s) must not delay heartbeats.
    listener_task = asyncio.ensure_future(_status_listener(spec, daemon, state_dir, bus))
    listener_task.add_done_callback(lambda task: _share(shared, task))
    try:
        await daemon.run()
    finally:
        if replication is not None:
            await replication.close()
        if not listener_task.done():
            listener_task.cancel()
        forget_shared(control_path(state_dir))
        with contextlib.suppress(asyncio.CancelledError):
            listener = await listener_task
            if listener is not None:
                await listener.close()
        await lag.stop()
        bus.close(5.0)


def _share(shared: asyncio.Future[SharedListener | None], task: asyncio.Task[ApiProcess | None]) -> None:
    if not shared.done():
        started = None if task.cancelled() or task.exception() is not None else task.result()
        shared.set_result(SharedListener(started) if started is not None else None)


async def _status_listener(spec: ClusterSpec, daemon: Daemon, state_dir: Path, bus: EventBus) -> ApiProcess | None:
    """Every head, in any role, answers a read-only GET /status on its own cluster addresses, so ``haoscar ha
    status`` on either head shows both. A head that cannot listen still runs: HA never depends on it. It is a
    process of its own asking over the control socket (ha/apiserver.py): this loop never serves the network; the
    public address only with ``ha.api_public``."""
    links = [link for link in daemon.cfg.links if spec.ha.api_public or link.network != "public"]
    candidates = [str(link.local) for link in links]
    addresses = local_addresses(candidates)
    if not addresses:
        bus.event("status.listen", f"none of {', '.join(candidates)} is up: no status listener", "warning")
        return None
    try:
        listener = await spawn(control_path(state_dir), addresses, spec.ha.status_port, commands=True)
    except (OSError, UserError) as exc:
        bus.event("status.listen", f"cannot serve the status on port {spec.ha.status_port}: {exc}", "warning")
        return None
    daemon.status_urls = [f"{url}/status" for url in listener.urls]
    return listener


async def run_witness(
    spec: ClusterSpec, key_file: Path | None = None, addresses: list[str] | None = None, state_dir: Path | None = None
) -> None:
    witness_spec = spec.ha.witness
    if witness_spec is None:
        raise UserError("the spec has no ha.witness section; add one (hostname, addresses) to run a witness")
    keys = KeySet.load(_key_path(spec, key_file), WITNESS_PURPOSES)  # a witness holds only the lease key
    heads = frozenset({spec.heads.primary.hostname, spec.heads.standby.hostname})
    witness = Witness(
        name=witness_spec.hostname,
        key=keys["lease"],
        heads=heads,
        table=LeaseTable(lease=spec.ha.lease_s, started=time.monotonic()),
        log=sys.stderr,
        # Without a state directory (tests) the marks live in memory only.
        state_file=state_dir / "witness" / "stale.json" if state_dir is not None else None,
        keyset=keys,
    )
    if state_dir is not None:  # a persisted boot counter, never the wall clock (ha/incarnation.py)
        witness.incarnation = next_incarnation(state_dir / "witness")
    await serve(witness, addresses or [str(a) for a in witness_spec.addresses], witness_spec.port)
