"""The long actions of a role change, run as tasks off the tick so heartbeats and lease renewals never wait.

Promotion: ARP probe for the VIP (on the event loop itself), fence the peer when needed, add the VIP and send the
first gratuitous ARP in the same callback, then services and monitoring. Demotion: monitoring off, services in
reverse, VIP dropped, replication drained for a handover, lease released, the peer told at once. Each ends by
recording its result and asking the daemon to decide again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

from haoscar.ha.decide import Demote, Promote
from haoscar.ha.fencing import FenceResult, fence
from haoscar.ha.host import Host
from haoscar.ha.state import State


class LongActions:
    """Promotion and demotion of one daemon, their results (read by ``decide``) and the takeover's timeline."""

    def __init__(self, daemon: Host) -> None:
        self.d = daemon
        self.promote_result: str | None = None
        self.demote_result: str | None = None
        self.last_fence: FenceResult | None = None
        # monotonic stamps of the latest takeover's steps (last heard, dead declared, lease, probe, VIP, GARP,
        # services), in the ``failover`` event: where the failover time goes
        self.timeline: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def promote(self, action: Promote) -> None:
        self.promote_result = None
        self._spawn(self._promote(action))

    def demote(self, action: Demote) -> None:
        self.demote_result = None
        self._spawn(self._demote(action))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _promote(self, action: Promote) -> None:
        d = self.d
        try:
            await self._clear_the_way(action)
            if d.sm.state != State.STARTING or not d.view(time.monotonic()).entitled:
                raise RuntimeError("lost the right to the role while preparing")
            await self._bring_up()
            self.promote_result = "ok"
        except Exception as exc:
            self.promote_result = f"{type(exc).__name__}: {exc}"
        d.evaluate()

    async def _clear_the_way(self, action: Promote) -> None:
        """Probe that nobody answers for the VIP (fence, or wait for the old owner's lifetime to end)."""
        d, t = self.d, self.d.cfg.timings
        must_fence = (not d.cfg.witness and action.fence) or d.peer.state == State.FAILED
        # Probed after a handover too (it costs one probe timeout): the old owner said it dropped the VIP, and
        # the probe makes sure no kernel still answers before we announce. A failover with the lease held probes
        # shorter (``decide.short_probe``); a re-probe below always waits the full timeout.
        # A failover proper uses the probe the standby made in the last milliseconds of the dead time when it is
        # still good (``early_probe.py``: the peer silent since, nobody answered, ended < margin ago).
        early, ended = await d.early_probe.outcome(d.peer.newest(), t.margin) if action.short_probe else (False, None)
        if early and ended is not None:
            holder, self.timeline["probe_done"] = None, ended
        else:
            holder = await d.vip.probe(t.failover_probe_timeout if action.short_probe else t.probe_timeout)
            self.timeline["probe_done"] = time.monotonic()
        if holder is not None and action.fence:
            d.bus.event("vip.conflict", f"{holder} still answers for {d.cfg.vip}: fencing", "warning")
            must_fence = True
        elif holder is not None:
            # No fencing: the old owner's kernel drops the VIP when its lifetime runs out.
            deadline = time.monotonic() + t.vip_lifetime + 1.0
            while holder is not None and time.monotonic() < deadline:
                await asyncio.sleep(t.interval / 2)
                holder = await d.vip.probe(t.probe_timeout)
            if holder is not None:
                raise RuntimeError(f"{holder} still answers for {d.cfg.vip}")
        if must_fence:
            await self._fence()

    async def _fence(self) -> None:
        d = self.d
        result = await fence(d.cfg.fencing, d.cfg.peer_name)
        self.last_fence = result
        d.bus.event(
            "fence",
            f"{result.method} {result.target}: {'ok' if result.ok else 'FAILED'} {result.message}",
            "warning" if result.ok else "critical",
            **result.as_dict(),
        )
        if not result.ok:
            raise RuntimeError(f"fencing {d.cfg.peer_name} failed: {result.message}")

    async def _bring_up(self) -> None:
        d = self.d
        d.vip_held = True  # before the add: an alias added before a failure is dropped with the others

        def step(name: str) -> None:
            self.timeline[name] = time.monotonic()

        # The first gratuitous ARP of each alias goes out in this very callback, right after that alias's add (one
        # raw send): clients move to us now, not after a thread hop; the rest of the burst follows from a thread.
        d.vip.bring_up(step)
        d.bus.event("vip.up", f"{d.cfg.vip} on {d.cfg.public_interface}")
        await asyncio.sleep(0.02)
        await asyncio.to_thread(d.vip.announce, 2)
        await d.resources.start()
        self.timeline["services_up"] = time.monotonic()
        d.resources.start_monitoring()

    async def _demote(self, action: Demote) -> None:
        d = self.d
        ok = True
        try:
            with contextlib.suppress(Exception):
                await d.resources.stop_monitoring()
            ok = await d.resources.stop()
        except Exception as exc:
            d.bus.event("resource.error", f"stopping services failed: {exc}", "critical")
            ok = False
        d.drop_vip(action.reason)
        if action.handover and d.replication is not None:
            # Services stopped and VIP gone, so nothing changes here any more: the last changes reach the peer
            # before it is told to take over (and before the lease is released).
            await d.replication.final_drain()
        d.lease_client.release()
        d.escalated = None
        if action.handover and ok:
            # Only a clean stop is handed over: a head whose service would not stop goes FAILED instead, and the
            # peer fences it before taking over (a handover would let the peer start a second copy unfenced).
            d.begin_handover(action.cause)
        self.demote_result = "ok" if ok else "a service would not stop"
        d.evaluate()
