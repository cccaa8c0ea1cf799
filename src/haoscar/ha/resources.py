"""The active head's resource group: the ``ha.services`` started in order, stopped in reverse, and kept alive.

Self-healing follows HA-OSCAR and Monit: each service is checked every ``interval`` seconds; a failed check
restarts it in place; a failure that would be restart number ``max_restarts + 1`` within ``restart_window`` seconds
stops the restarting and calls ``on_escalate(service)``, once, so the daemon fails over to the other head. A service
that will not stop makes ``stop()`` return False: the node still holds something it cannot release and must be
fenced before the other head takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from haoscar.events import EventBus
from haoscar.ha.api import ApiProvider
from haoscar.ha.services import ResourceError, ServiceEnv, ServiceResource, build_service
from haoscar.ha.services.proc import within
from haoscar.spec.models import ClusterSpec

__all__ = ["ResourceError", "ResourceGroup", "ResourceStatus"]

State = Literal["stopped", "starting", "running", "restarting", "failed", "escalated", "stopping", "stop-failed"]


@dataclass(frozen=True)
class ResourceStatus:
    name: str
    kind: str
    state: State
    restarts_in_window: int  # as counted for escalation
    total_restarts: int
    last_error: str | None
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Track:
    state: State = "stopped"
    restarts: deque[float] = field(default_factory=deque)
    total_restarts: int = 0
    last_error: str | None = None
    escalated: bool = False


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


class ResourceGroup:
    def __init__(self, services: list[ServiceResource], bus: EventBus, clock: Callable[[], float] = time.monotonic):
        self.services = services
        self.bus = bus
        self.clock = clock
        self.on_escalate: Callable[[str], None] = lambda name: None
        self._track = {svc.name: _Track() for svc in services}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._generation = 0  # bumped by stop_monitoring: a monitor of an older generation ends by itself

    @classmethod
    def from_spec(
        cls,
        spec: ClusterSpec,
        node_name: str,
        state_dir: Path,
        bus: EventBus,
        api_status_provider: ApiProvider | None = None,
    ) -> ResourceGroup:
        env = ServiceEnv(node=node_name, state_dir=state_dir, bus=bus, spec=spec, api_provider=api_status_provider)
        return cls([build_service(service, env) for service in spec.ha.services], bus)

    # -- start and stop -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every service in order, each ready before the next; on a failure the ones already started are
        stopped again (reverse order) and ``ResourceError`` names the service that failed."""
        began = time.monotonic()
        for index, svc in enumerate(self.services):
            track = self._track[svc.name]
            track.state = "starting"
            t0 = time.monotonic()
            try:
                await svc.start()
            except Exception as exc:
                error = (
                    exc if isinstance(exc, ResourceError) else ResourceError(svc.name, f"{type(exc).__name__}: {exc}")
                )
                track.state, track.last_error = "failed", error.reason
                self.bus.event("resource.start_failed", f"{svc.name}: {error.reason}", "critical", service=svc.name)
                await self._stop_list(list(reversed(self.services[: index + 1])))
                raise error from None
            track.state = "running"
            self.bus.event("resource.started", svc.name, service=svc.name, kind=svc.kind, ms=_ms(t0), pid=svc.pid())
        self.bus.event("resources.started", f"{len(self.services)} services", ms=_ms(began))

    async def stop(self) -> bool:
        """Stop monitoring, then every service in reverse order. False if any would not stop."""
        await self.stop_monitoring()
        began = time.monotonic()
        ok = await self._stop_list(list(reversed(self.services)))
        self.bus.event(
            "resources.stopped" if ok else "resources.stop_failed",
            "all stopped" if ok else "something would not stop; fence this node",
            "info" if ok else "critical",
            ms=_ms(began),
        )
        return ok

    async def _stop_list(self, services: list[ServiceResource]) -> bool:
        ok = True
        for svc in services:
            ok = await self._stop_one(svc) and ok
        return ok

    async def _stop_one(self, svc: ServiceResource) -> bool:
        track = self._track[svc.name]
        previous, track.state = track.state, "stopping"
        t0 = time.monotonic()
        try:
            stopped = await svc.stop()
            reason = getattr(svc, "last_stop_error", None) or "it would not stop"
        except Exception as exc:
            stopped, reason = False, f"{type(exc).__name__}: {exc}"
        if stopped:
            track.state = "stopped" if previous not in ("failed", "escalated") else previous
            self.bus.event("resource.stopped", svc.name, service=svc.name, ms=_ms(t0))
        else:
            track.state, track.last_error = "stop-failed", reason
            self.bus.event("resource.stop_failed", f"{svc.name}: {reason}", "critical", service=svc.name, ms=_ms(t0))
        return stopped

    # -- self-healing ---------------------------------------------------------------------------------------
    def start_monitoring(self) -> None:
        for svc in self.services:
            task = self._tasks.get(svc.name)
            if task is None or task.done():
                self._track[svc.name].escalated = False
                self._tasks[svc.name] = asyncio.get_running_loop().create_task(
                    self._monitor(svc, self._generation), name=f"haoscar-monitor-{svc.name}"
                )

    def stop_monitoring(self) -> asyncio.Future[Any]:
        """Cancel the monitors; the returned future (awaiting it is optional) is done when they have ended."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._generation += 1
        for task in tasks:
            task.cancel()
        return asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, svc: ServiceResource) -> str | None:
        try:
            return await within(svc.check(), svc.spec.timeout)
        except TimeoutError:
            return f"check took longer than {svc.spec.timeout:g} s"
        except ResourceError as exc:
            return exc.reason
        except Exception as exc:
            return f"check raised {type(exc).__name__}: {exc}"

    def _prune(self, track: _Track, window: float) -> None:
        horizon = self.clock() - window
        while track.restarts and track.restarts[0] <= horizon:
            track.restarts.popleft()

    async def _monitor(self, svc: ServiceResource, generation: int) -> None:
        spec, track = svc.spec, self._track[svc.name]
        while generation == self._generation:
            await asyncio.sleep(spec.interval)
            problem = await self._check(svc)
            if generation != self._generation:
                return  # monitoring was stopped meanwhile: the group's stop owns the service now
            if problem is None:
                if track.state == "restarting":
                    track.state = "running"
                continue
            track.last_error = problem
            self._prune(track, spec.restart_window)
            if len(track.restarts) >= spec.max_restarts:
                track.state = "escalated"
                self.bus.event(
                    "resource.escalated",
                    f"{svc.name} failed {len(track.restarts) + 1} times within {spec.restart_window:g} s: {problem}",
                    "critical",
                    service=svc.name,
                )
                self._escalate(svc.name, track)
                return
            track.restarts.append(self.clock())
            track.total_restarts += 1
            self.bus.event(
                "resource.failed",
                f"{svc.name}: {problem}; restarting in place ({len(track.restarts)}/{spec.max_restarts})",
                "warning",
                service=svc.name,
                restarts=len(track.restarts),
            )
            track.state = "restarting"
            t0 = time.monotonic()
            if not await self._stop_one(svc):
                self._escalate(svc.name, track)  # it still holds something: only a fence releases it
                return
            track.state = "restarting"
            try:
                await svc.start()
            except Exception as exc:  # the monitor must outlive any failure, or the service is silently unwatched
                reason = exc.reason if isinstance(exc, ResourceError) else f"{type(exc).__name__}: {exc}"
                track.last_error = reason
                self.bus.event("resource.restart_failed", f"{svc.name}: {reason}", "warning", service=svc.name)
                continue
            track.state = "running"
            self.bus.event("resource.restarted", svc.name, service=svc.name, ms=_ms(t0), pid=svc.pid())

    def _escalate(self, name: str, track: _Track) -> None:
        if track.escalated:
            return
        track.escalated = True
        try:
            self.on_escalate(name)
        except Exception as exc:
            self.bus.log_error(f"on_escalate({name}) raised {type(exc).__name__}: {exc}")

    # -- status -----------------------------------------------------------------------------------------------
    def snapshot(self) -> list[ResourceStatus]:
        out = []
        for svc in self.services:
            track = self._track[svc.name]
            self._prune(track, svc.spec.restart_window)
            pid = None
            with contextlib.suppress(Exception):
                pid = svc.pid()
            out.append(
                ResourceStatus(
                    name=svc.name,
                    kind=svc.kind,
                    state=track.state,
                    restarts_in_window=len(track.restarts),
                    total_restarts=track.total_restarts,
                    last_error=track.last_error,
                    pid=pid,
                )
            )
        return out
