"""Replication driven by the HA daemon's role: the glue between ``ha/daemon.py`` and ``ReplicationManager``.

- The direction follows the role: ACTIVE -> the manager runs as source (toward the peer); STANDBY -> as target.
  Each role change is one operation run as a task, one at a time (a newer one cancels the running one), so
  heartbeats never wait for an rsync run, a database copy or a catch-up.
- A head that was the source and did not hand over cleanly (a crash, a restart, a lost lease) must not accept the
  new active head's pushes blindly: its own changes would be overwritten. It first catches up from the peer once
  the peer is active (``catch_up_from``: what only it had is kept under ``replication/divergent/<UTC time>/``);
  meanwhile it is ``standby:catching-up`` and not eligible for the role (``decide`` reads ``catching_up``).
- A standby whose own copy is stale (the manager's persisted flag) does not take over unless the administrator
  forces it (``request_takeover(force=True)``, loudly).
- The daemon never writes the database from its event loop: while it is the source every commit waits for the
  standby's acknowledgement through this very loop (the commit hook), so such a write would deadlock. The only
  database work here (inside the manager) runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from haoscar.events import EventBus
from haoscar.ha.state import State
from haoscar.replication.state import PersistedState, ReplicationStatus
from haoscar.spec.models import ClusterSpec

Want = Literal["none", "source", "target", "catch-up"]
# A switchover waits this long for replication to keep up (the control client waits 10 s for the reply).
SWITCHOVER_DRAIN_S = 5.0
# Keeping up: the standby in sync and the oldest change not yet on it younger than this (the documented bound).
KEEP_UP_LAG_S = 1.0
# After the services stopped and the VIP went, before the peer is told to take over: the last changes reach it.
FINAL_DRAIN_S = 3.0
CATCH_UP_RETRY_S = 3.0


class ManagerPort(Protocol):
    """What the glue needs of ``haoscar.replication.manager.ReplicationManager`` (a fake in unit tests)."""

    persisted: PersistedState

    @property
    def role(self) -> str: ...

    async def start_source(self, peer: str | None = None) -> None: ...
    async def start_target(self) -> None: ...
    async def stop(self) -> None: ...
    async def catch_up_from(self, peer: str, timeout: float = 120.0) -> Any: ...
    async def drain(self, timeout: float) -> bool: ...
    def status(self) -> ReplicationStatus: ...
    def may_take_over(self, force: bool = False) -> tuple[bool, str]: ...
    def drained_now(self) -> bool: ...
    def mark_own_copy_stale(self, reason: str) -> None: ...
    def set_stale_confirmer(self, confirm: Callable[[bool], Awaitable[bool]]) -> None: ...


class ReplicationGlue:
    def __init__(self, manager: ManagerPort, bus: EventBus, node: str, peer: str) -> None:
        self.manager = manager
        self.bus = bus
        self.node = node
        self.peer = peer
        # A previous life of this head ended as the source: it may hold changes the peer never got.
        self.was_source = manager.persisted.role == "source"
        self.want: Want = "none"
        self.phase = "idle"  # idle | starting | source | target | waiting-for-peer | catching-up | failed
        self.forced = False
        self.last_error: str | None = None
        self.last_catch_up: dict[str, Any] | None = None
        self._clean_handover = False
        self._task: asyncio.Task[None] | None = None

    # -- what decide() needs ----------------------------------------------------------------------------------
    @property
    def own_copy_stale(self) -> bool:
        """This head's replicated data is behind (told by the active head, or set while catching up). The flag
        on a head that was the source means "my standby is stale", which says nothing about this head's copy."""
        persisted = self.manager.persisted
        return persisted.standby_stale and persisted.role != "source" and self.manager.role != "source"

    @property
    def catching_up(self) -> bool:
        return self.want == "catch-up" and self.phase == "catching-up"

    def drained_now(self) -> bool:
        """As the source: the standby in sync and replication keeping up (a failback may start now; the final
        drain after the services stopped ships the rest)."""
        if self.manager.role != "source" or self.manager.drained_now():
            return True
        status = self.manager.status()
        return not status.standby_stale and status.db_connected and status.lag_s < KEEP_UP_LAG_S

    def standby_stale_mark(self) -> tuple[bool, str] | None:
        """As the source: (is the standby stale, why), for the witness; None when this head is not the source."""
        if self.manager.role != "source":
            return None
        persisted = self.manager.persisted
        return persisted.standby_stale, persisted.stale_reason

    def witness_says_stale(self, reason: str) -> None:
        """The witness refused this standby the lease because the active head marked its copy stale."""
        if not self.own_copy_stale:
            self.manager.mark_own_copy_stale(f"the witness says so: {reason}")

    def set_stale_confirmer(self, confirm: Callable[[bool], Awaitable[bool]]) -> None:
        """The daemon's ``confirm_peer_stale``: the manager awaits it (True) before acknowledging a change the standby
        lacks, and (False) before telling the standby that its copy is current again."""
        self.manager.set_stale_confirmer(confirm)

    def substate(self) -> str | None:
        if self.want == "catch-up":
            return "catching-up" if self.phase != "waiting-for-peer" else "waiting-to-catch-up"
        if self.own_copy_stale and self.manager.role != "source":
            return "stale"
        return None

    # -- role changes -------------------------------------------------------------------------------------------
    def role_changed(self, new: State) -> None:
        if new == State.ACTIVE:
            self.forced = False
            self._clean_handover = False
            self._set("source")
        elif new == State.STANDBY:
            if self.was_source and not self._clean_handover:
                self._set("catch-up")
            else:
                self._set("target")
            self._clean_handover = False
        elif new in (State.FAILED, State.STOPPED):
            self._set("none")

    def tick(self, peer_active: bool) -> None:
        """Every heartbeat interval: a pending catch-up starts once the peer is active (only then is there a
        newer copy to pull, and an rsync daemon that serves it)."""
        if self.want == "catch-up" and self.phase == "waiting-for-peer" and peer_active:
            self._run(self._catch_up(), "catching-up")

    def _set(self, want: Want) -> None:
        if want == self.want and self._task is not None and not self._task.done():
            return
        self.want = want
        if want == "source":
            self.was_source = True
            self._run(self._start_source(), "starting")
        elif want == "target":
            self.was_source = False
            self._run(self._start_target(), "starting")
        elif want == "catch-up":
            self._run(self._stop(), "waiting-for-peer")  # nothing may be pushed here before the catch-up
        else:
            self._run(self._stop(), "idle")

    def _run(self, op: Any, phase: str) -> None:
        previous = self._task
        self.phase = phase
        self._task = asyncio.ensure_future(self._after(previous, op))

    async def _after(self, previous: asyncio.Task[None] | None, op: Any) -> None:
        # One operation at a time: the newer one cancels the running one (its last step, the manager's stop(),
        # is done by the next operation's start).
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        try:
            await op
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the active head keeps serving whatever replication does
            self.phase = "failed"
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.bus.event(
                "replication.failed", f"replication as {self.want} could not start: {exc}", "critical",
                problem="start",
            )  # fmt: skip

    async def _start_source(self) -> None:
        await self.manager.start_source(self.peer)
        self.phase, self.last_error = "source", None

    async def _start_target(self) -> None:
        await self.manager.start_target()
        self.phase, self.last_error = "target", None

    async def _stop(self) -> None:
        await self.manager.stop()

    async def _catch_up(self) -> None:
        while True:
            report = await self.manager.catch_up_from(self.peer)
            self.last_catch_up = {
                "peer": report.peer,
                "divergent_dir": str(report.divergent_dir),
                "divergent_files": len(report.divergent_files),
                "seconds": round(report.seconds, 3),
                "ready": report.ready,
                "error": report.error,
            }
            if report.error is None:
                # Pulled and accepting replication; ready once the active head confirmed a full sync (the
                # manager clears the stale flag then), an ordinary standby from then on.
                while not report.ready and self.own_copy_stale:
                    await asyncio.sleep(0.2)
                self.was_source = False
                self.want, self.phase, self.last_error = "target", "target", None
                return
            self.last_error = report.error
            await asyncio.sleep(CATCH_UP_RETRY_S)

    # -- switchover, failback, forced takeover -----------------------------------------------------------------
    async def drain_for_switchover(self, timeout: float = SWITCHOVER_DRAIN_S) -> tuple[bool, str]:
        """Before a planned move: the standby in sync and replication keeping up, or a clear refusal (and no
        move). Writers may still be at work here; the final drain, once the services and the VIP are gone, ships
        the last changes."""
        if self.manager.role != "source":
            return True, "not the replication source"
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.drained_now():
                return True, f"replication keeping up ({time.monotonic() - started:.2f} s)"
            await asyncio.sleep(0.05)
        status = self.manager.status()
        why = (
            f"replication to {self.peer} did not drain within {timeout:g} s ({status.files_pending} files, "
            f"{status.bytes_pending} bytes pending, standby {'stale' if status.standby_stale else 'in sync'}"
            f"{', ' + status.last_error if status.last_error else ''}); the role stays here so nothing is lost"
        )
        self.bus.event("replication.drain_failed", why, "warning")
        return False, why

    async def final_drain(self, timeout: float = FINAL_DRAIN_S) -> None:
        """Services stopped, the VIP about to go to the peer: let the last changes arrive first."""
        if self.manager.role != "source":
            return
        ok = await self.manager.drain(timeout)
        self._clean_handover = ok
        if not ok:
            self.bus.event("replication.drain_failed", f"handing over with changes still pending for {self.peer}",
                           "warning")  # fmt: skip

    def request_takeover(self, force: bool) -> dict[str, Any] | None:
        """The administrator's ``haoscar ha takeover [--force]`` on a standby; None when replication has
        nothing to say (the copy is current)."""
        if not self.own_copy_stale:
            return None
        allowed, why = self.manager.may_take_over(force)
        if not allowed:
            return {"ok": False, "error": why}
        self.forced = True
        self.bus.event("ha.forced_takeover", f"{self.node}: {why}", "critical")
        return {
            "ok": True,
            "forced": True,
            "message": f"{why}. {self.node} takes the role as soon as {self.peer} is silent and the witness grants "
            "the lease.",
        }

    # -- status ---------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        current = self.manager.status().to_dict()
        current.pop("updated", None)
        current.update(
            phase=self.phase,
            substate=self.substate(),
            own_copy_stale=self.own_copy_stale,
            forced=self.forced,
            glue_error=self.last_error,
            last_catch_up=self.last_catch_up,
        )
        return current

    def keys_changed(self) -> None:
        """The daemon reloaded its keys: the replication key may have changed too."""
        refresh = getattr(self.manager, "refresh_keys", None)
        if refresh is None:
            return
        try:
            refresh()
        except Exception as exc:  # a bad key file: replication keeps the key it has, and says so
            self.bus.event("replication.keys", f"replication key not reloaded: {exc}", "critical")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.manager.stop()


def make_glue(
    spec: ClusterSpec, node: str, state_dir: Path, bus: EventBus, key_file: Path | None
) -> ReplicationGlue | None:
    """The daemon's replication, or None when the spec turns it off (``ha.replication: false``)."""
    if not spec.ha.replication:
        return None
    from haoscar.replication.manager import ReplicationManager

    manager = ReplicationManager(spec, node, state_dir, bus, key_file)
    return ReplicationGlue(manager, bus, manager.cfg.node, manager.cfg.peer)
