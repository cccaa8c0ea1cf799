"""``haoscar ha run``: one head's HA daemon, the tick (Patroni-style: snapshot -> pure decide -> act).

One tick per heartbeat interval: send heartbeats on every shared network (``transport``) and a lease request
(``lease_client``: acquire when this head wants or holds the role, query otherwise), renew the VIP's kernel
lifetime while entitled, watch health (``health``), then take a snapshot (``View``), call the pure ``decide`` and
carry out its actions. A packet, a lease reply, the end of a long action or the lease view's deadline also
re-evaluate at once. Long actions (``actions``: takeover = probe/fence/VIP/services; demotion) run as tasks, so
heartbeats and lease renewals never wait for them. Every role change is one ``role`` event carrying its typed
cause (``cause``); ``status_model`` builds what ``haoscar ha status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.events import EventBus, Severity
from haoscar.ha import status_model
from haoscar.ha.actions import LongActions
from haoscar.ha.cause import Cause, Failover
from haoscar.ha.config import NodeConfig
from haoscar.ha.control import control_path, serve_control
from haoscar.ha.decide import Action, Demote, Go, Promote, View, decide, lease_probe, wants_failback
from haoscar.ha.early_probe import EarlyProbe
from haoscar.ha.health import Health
from haoscar.ha.host import Resources, VipPort
from haoscar.ha.incarnation import next_incarnation
from haoscar.ha.keyset import KeySet
from haoscar.ha.lease import LeaseView
from haoscar.ha.lease_client import LeaseClient
from haoscar.ha.peer import PeerView
from haoscar.ha.precise_timer import call_at_precisely
from haoscar.ha.replication_glue import ReplicationGlue
from haoscar.ha.state import HOLDS_VIP, State, StateMachine
from haoscar.ha.timing import LoopLagMonitor
from haoscar.ha.transport import HeartbeatTransport, Packets
from haoscar.ha.vip import vips_for

__all__ = ["Daemon", "Failover", "Resources", "VipPort"]


class Daemon:
    def __init__(
        self,
        cfg: NodeConfig,
        *,
        key: bytes | KeySet,
        state_dir: Path,
        bus: EventBus,
        resources: Resources,
        vip: VipPort | None = None,
        replication: ReplicationGlue | None = None,
    ) -> None:
        self.cfg = cfg
        self.replication = replication  # None: ha.replication is off (or a test without it)
        self.state_dir = state_dir
        self.bus = bus
        self.resources = resources
        resources.on_escalate = self._on_escalate
        self.vip: VipPort = vip or vips_for(cfg)  # the public alias, and the private one when configured
        self.sm = StateMachine(self._on_transition)
        self.started = self.state_since = time.monotonic()
        self.peer = PeerView(tuple(link.network for link in cfg.links))
        self.keys = key if isinstance(key, KeySet) else KeySet.of_secret(key)
        # Persisted and fsync'd before the first packet: never the wall clock (ha/incarnation.py).
        self.packets = Packets(self.keys, bus, next_incarnation(state_dir / "ha"))
        self.transport = HeartbeatTransport(cfg, self.packets, self._on_heartbeat)
        self.lease_client = LeaseClient(cfg, self.packets, self, replication)
        self.actions = LongActions(self)
        self.health = Health(self)
        self.vip_held = False
        self.escalated: str | None = None
        self.requests = _Requests()
        self.handover = _Handover()
        # (last heard from the peer or now, cause, reason, when the peer was declared dead / the role was wanted)
        self.takeover_cause: tuple[float, Cause, str, float] | None = None
        # A standby that wants the role asks the witness (``acquire``) while staying standby: since when, and why.
        self.probe_since: float | None = None
        self.probe_why: str | None = None
        self.last_failover: Failover | None = None
        self._wake: asyncio.TimerHandle | None = None
        self.early_probe = EarlyProbe(lambda: self.vip, cfg.timings, self.lease_client.ask_ahead)
        self._stopped = asyncio.Event()
        if replication is not None:
            replication.set_stale_confirmer(self.lease_client.confirm_peer_stale)
        self.status_urls: list[str] = []  # where this head serves its read-only status (set by the runner)
        self.loop_lag: LoopLagMonitor | None = None  # the event loop's lag, shown in status (set by the runner)

    # -- what the parts read ----------------------------------------------------------------------------------
    @property
    def lease(self) -> LeaseView:
        return self.lease_client.view

    @property
    def incarnation(self) -> int:
        return self.packets.incarnation

    @property
    def role_state(self) -> State:
        return self.sm.state

    @property
    def probing(self) -> bool:
        return self.probe_why is not None

    def peer_alive(self, now: float) -> bool:
        newest = self.peer.newest()
        return newest is not None and now - newest < self.cfg.timings.dead

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # A VIP left by a previous life of this daemon is dropped before anything else, without announcing it.
        with contextlib.suppress(Exception):
            if self.vip.remove():
                self.bus.event("vip.stale", f"removed a VIP {self.cfg.vip} left from before this start", "warning")
        await self.transport.bind()
        # Start-up waits count from the moment this head can hear its peer, not from the object's creation.
        self.started = self.state_since = time.monotonic()
        await self.lease_client.open()
        control = await serve_control(control_path(self.state_dir), self._control)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_shutdown)
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.reload_keys)  # `systemctl reload`, `haoscar keys rotate`
        self.bus.event(
            "daemon.start", f"{self.cfg.name} ({self.cfg.role}) starting", timings=self.cfg.timings.as_dict()
        )
        if ready is not None:
            ready()
        ticker = loop.create_task(self._ticker(), name="haoscar-ha-tick")
        try:
            await self._stopped.wait()
        finally:
            ticker.cancel()
            control.close()
            self.transport.close()
            self.lease_client.close()
            with contextlib.suppress(Exception):
                self.vip.remove()
            self.vip.close()
            self.bus.event("daemon.stop", f"{self.cfg.name} stopped")

    def reload_keys(self) -> dict[str, Any]:
        """Re-read the keyrings (a key rotation's steps); the keys in use stay when a file is bad."""
        result = self.keys.reload()
        if result["ok"]:
            self.bus.event("keys.reloaded", "keys reloaded", keys=result["keys"])
        else:
            self.bus.event("keys.reload_failed", f"keys not reloaded: {result['error']}", "critical")
        if self.replication is not None:
            self.replication.keys_changed()
        return result

    def request_shutdown(self) -> None:
        self.requests.shutdown = True
        self.evaluate()

    async def _ticker(self) -> None:
        interval = self.cfg.timings.interval
        next_at = time.monotonic()
        while True:
            self._tick()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # the loop was stalled: do not fire a burst of catch-up ticks
                next_at, delay = time.monotonic(), 0
            await asyncio.sleep(max(0.0, delay))
            if self.loop_lag is not None:  # the tick's lateness: the lag where it counts, no timer of its own
                self.loop_lag.observe(time.monotonic() - next_at)

    def _tick(self) -> None:
        self.transport.drain()  # heartbeats queued during a stall of ours first: never our stall taken for the peer's
        now = time.monotonic()
        self.lease_client.send(now)  # first: the lease then ends at the witness no later than our silence's dead time
        self.send_heartbeats(now)
        if self.vip_held and self.sm.state in HOLDS_VIP and self.view(now).entitled:
            try:
                self.vip.add()  # renews the kernel lifetime: the dead man's switch
            except Exception as exc:
                self.bus.event("vip.error", f"could not renew {self.cfg.vip}: {exc}", "warning")
        self.health.watch(now)
        self.health.replication_tick(now)
        self.evaluate(now)

    # -- packets --------------------------------------------------------------------------------------------
    def send_heartbeats(self, now: float) -> None:
        state, handover = self.sm.state, self.handover
        handing_over = handover.until is not None and now < handover.until
        self.transport.send(
            {
                "node": self.cfg.name,
                "inc": self.incarnation,
                "state": state.label,
                "healthy": self.escalated is None and state != State.FAILED,
                "all_links": all(self.peer.alive_on(now, self.cfg.timings.dead).values()),
                "sees": self.peer.state.label if self.peer.state is not None and self.peer_alive(now) else "unknown",
                "ack": self.peer.received_seq,
                "ack_inc": self.peer.incarnation,
                "handover": self.cfg.peer_name if handing_over else None,
                "handover_id": handover.id,
                "handover_cause": handover.cause.value if handing_over else None,
                "failback": self._wants_failback(now),
                "vip": self.vip_held,
                "lease": round(self.lease.remaining(now), 3),
                "public": self.health.public.score,
            },
            now,
        )

    def _on_heartbeat(self, network: str, body: dict[str, Any]) -> None:
        now = time.monotonic()
        before = self.peer.state
        self.peer.heard(network, body, now, self.incarnation)
        if self.peer.state != before:
            self.evaluate(now)

    def _wants_failback(self, now: float) -> bool:
        if not self.cfg.is_primary or self.sm.state != State.STANDBY:
            return False
        return self.requests.failback or wants_failback(self.view(now))

    # -- decide and act -------------------------------------------------------------------------------------
    def _peer_guard_until(self) -> float | None:
        """Until when the peer cannot have declared us dead: it acknowledged our packet ``ack`` while seeing us
        active and being standby itself, and it waits ``dead`` seconds of silence after hearing us."""
        if self.peer.sees_me != State.ACTIVE or self.peer.state != State.STANDBY:
            return None
        sent = self.packets.sent.sent_at(self.peer.ack_seq)
        return None if sent is None else sent + self.cfg.timings.dead - self.cfg.timings.margin

    def view(self, now: float) -> View:
        """The immutable snapshot ``decide`` reads."""
        t, cfg, peer, repl = self.cfg.timings, self.cfg, self.peer, self.replication
        return View(
            now=now,
            state=self.sm.state,
            state_since=self.state_since,
            started=self.started,
            is_primary=cfg.is_primary,
            dead=t.dead,
            startup_wait=t.startup_wait,
            handover_timeout=t.handover_timeout,
            witness_configured=bool(cfg.witness),
            fencing_configured=cfg.fencing_configured,
            failback_auto=cfg.failback == "auto",
            failback_stable=cfg.failback_stable_s,
            peer_last_heard=peer.newest(),
            peer_state=peer.state,
            peer_healthy=peer.healthy,
            peer_all_links=all(peer.alive_on(now, t.dead).values()),
            peer_handover_to_me=peer.handover_to == cfg.name
            and (peer.incarnation, peer.handover_id) != self.handover.taken,
            peer_handover_cause=peer.handover_cause,
            peer_wants_failback=peer.wants_failback,
            peer_guard_until=self._peer_guard_until(),
            lease_until=self.lease.until,
            promote_result=self.actions.promote_result,
            demote_result=self.actions.demote_result,
            resources_escalated=self.escalated is not None,
            shutdown=self.requests.shutdown,
            switchover_requested=self.requests.switchover,
            failback_requested=self.requests.failback,
            handing_over_until=self.handover.until,
            stable_since=self.health.stable_since,
            repl_stale=repl is not None and repl.own_copy_stale,
            repl_forced=repl is not None and repl.forced,
            repl_catching_up=repl is not None and repl.catching_up,
            repl_drained=repl is None or repl.drained_now(),
            initdead=t.initdead,
            takeover_cause=self.takeover_cause[1] if self.takeover_cause is not None else None,
            public_score=self.health.public.score,
            public_max=self.health.public.max_score,
            peer_public_score=peer.public_score,
        )

    def evaluate(self, now: float | None = None) -> None:
        if now is None:  # a timer (the peer's dead time, the lease's end): queued heartbeats count first, as in _tick
            self.transport.drain()
        now = time.monotonic() if now is None else now
        for _ in range(4):  # a transition can enable the next one (e.g. TAKEOVER -> STARTING) in the same instant
            actions = decide(self.view(now))
            if not actions:
                break
            for action in actions:
                self._apply(action, now)
        self._update_probe(now)
        self._schedule_wake(now)
        if self.sm.state == State.STOPPED:
            self._stopped.set()

    def _update_probe(self, now: float) -> None:
        """Start or end the standby's lease probe (while denied: one warning, one info at the end; no role event)."""
        why = lease_probe(self.view(now)) if self.sm.state == State.STANDBY else None
        started = why is not None and self.probe_why is None
        self.probe_why = why
        if why is None:
            self.probe_since = None
            unwanted = not self.early_probe.asked_for(self.peer.newest())  # one asked ahead waits for the dead time
            if self.sm.state == State.STANDBY and self.lease.valid(now) and unwanted:
                self.lease_client.release()  # granted to a probe that is no longer wanted (the peer came back)
        elif started:
            self.probe_since = now
            self.lease_client.send(now)  # ask at once, not at the next tick
        self.health.lease_denied(now, self.probe_since)

    def _schedule_wake(self, now: float) -> None:
        """Re-evaluate exactly when the lease view or the peer guard runs out (active), or when the peer's dead
        time ends (standby), not at the next tick."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        deadline: float | None = None
        standby = self.sm.state == State.STANDBY
        self.early_probe.watch(now, self.peer.newest() if standby else None, bool(self.cfg.witness))  # early_probe.py
        if standby:
            # A standby declares its peer dead the moment the dead time after the last heartbeat ends (+0.1 ms: a timer
            # firing a hair early is set again), not at the next tick (up to one interval later): probe at once.
            newest = self.peer.newest()
            deadline = None if newest is None else newest + self.cfg.timings.dead + 0.0001
        elif self.sm.state in HOLDS_VIP:
            deadlines = [d for d in (self.lease.until, self._peer_guard_until()) if d is not None and d > now]
            deadline = max(deadlines) if deadlines else None
        if deadline is not None and deadline > now:
            loop = asyncio.get_running_loop()  # precise (precise_timer.py): the dead time's end starts a failover
            self._wake = call_at_precisely(loop, loop.time() + (deadline - now), self.evaluate)

    def _apply(self, action: Action, now: float) -> None:
        if isinstance(action, Go):
            if action.state == State.TAKEOVER:
                self._begin_takeover(action, now)
            self.sm.set(action.state, action.reason, action.cause)
            if action.state == State.TAKEOVER and not self.lease.valid(now):
                self.lease_client.send(now)  # ask at once, not at the next tick
        elif isinstance(action, Promote):
            self.actions.promote(action)
        elif isinstance(action, Demote):
            self.sm.set(State.STOPPING, action.reason, action.cause)
            if action.urgent:
                self.drop_vip(action.reason)  # now, in this very callback: the lease view is ending
            self.actions.demote(action)

    def _begin_takeover(self, action: Go, now: float) -> None:
        peer_heard = self.peer.newest()
        since = peer_heard if peer_heard is not None and not self.peer_alive(now) else now
        declared = self.probe_since or now
        self.takeover_cause = (since, action.cause, action.reason, declared)
        self.actions.timeline = {"last_heard": since, "dead_declared": declared, "takeover": now}
        if self.peer.handover_to == self.cfg.name:
            self.handover.taken = (self.peer.incarnation, self.peer.handover_id)

    def begin_handover(self, cause: Cause) -> None:
        """The demotion is done (VIP dropped, lease released): offer the role to the peer, and tell it now, not at
        the next tick - a daemon that is shutting down has no next tick."""
        now = time.monotonic()
        self.handover.until = now + self.cfg.timings.handover_timeout
        self.handover.id = self.packets.next_seq()
        self.handover.cause = cause
        self.takeover_cause = None
        self.send_heartbeats(now)

    def _on_transition(self, old: State, new: State, reason: str) -> None:
        cause = self.sm.cause
        self.state_since = time.monotonic()
        severity: Severity = "warning" if new in (State.STOPPING, State.FAILED) else "info"
        if new == State.FAILED:
            severity = "critical"
        self.bus.event(
            "role", f"{old.label} -> {new.label}: {reason}", severity, old=old.label, new=new.label, cause=cause.value
        )
        if new == State.ACTIVE:
            self.requests.switchover = self.requests.failback = False
            self.handover.until = None
            self._record_failover()
        if new == State.STANDBY:
            self.actions.promote_result = None
        if self.replication is not None:
            self.replication.role_changed(new)  # starts a task: the direction follows the role

    def _record_failover(self) -> None:
        """The role is ours: how long it took, and why (the ``failover`` event and ``last_failover``)."""
        start = self.state_since
        since, cause, why, declared = self.takeover_cause or (start, Cause.START, "start", start)
        took = start - since
        kind = cause.failover_kind
        since_dead = round(start - declared, 3) if cause.peer_was_dead else None
        self.last_failover = Failover(why, round(took, 3), time.time(), kind, since_dead, cause)
        detail = f", {since_dead * 1000:.0f} ms after declaring the peer dead" if since_dead is not None else ""
        self.bus.event(
            "failover",
            f"active after {took * 1000:.0f} ms ({why}){detail}",
            took_s=round(took, 3),
            since_dead_s=since_dead,
            kind=kind,
            cause=cause.value,
            timeline={step: round(at, 4) for step, at in self.actions.timeline.items()},
        )

    def drop_vip(self, reason: str) -> None:
        was = self.vip_held
        self.vip_held = False
        try:
            removed = self.vip.remove()
        except Exception as exc:
            self.bus.event("vip.error", f"could not remove {self.cfg.vip}: {exc}", "critical")
            return
        if was or removed:
            self.bus.event("vip.down", f"{self.cfg.vip} dropped ({reason})")

    def _on_escalate(self, service: str) -> None:
        self.escalated = service
        self.bus.event("resource.escalate", f"{service} failed too often: failing over", "critical")
        self.evaluate()

    # -- operator requests (the control socket and the API provider) ----------------------------------------
    async def _control(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if op == "status":
            return self.status()
        if op == "switchover":
            return await self.switchover()
        if op == "failback":
            return await self.failback()
        if op == "reload-keys":
            return self.reload_keys()
        if op == "takeover":
            return await self.takeover(bool(request.get("force")))
        ops = "status, switchover, failback, takeover or reload-keys"
        return {"ok": False, "error": f"unknown request {op!r}; use {ops}"}

    async def switchover(self) -> dict[str, Any]:
        now = time.monotonic()
        if self.sm.state != State.ACTIVE:
            why = f"{self.cfg.name} is {self.sm.state.label}; run switchover on the active head"
            return {"ok": False, "error": why}
        if not (self.peer_alive(now) and self.peer.state == State.STANDBY and self.peer.healthy):
            return {"ok": False, "error": f"{self.cfg.peer_name} is not a healthy standby; switchover refused"}
        if self.replication is not None:
            drained, why = await self.replication.drain_for_switchover()
            if not drained:
                return {"ok": False, "error": why}
            if self.sm.state != State.ACTIVE:
                return {"ok": False, "error": f"{self.cfg.name} left the active role while replication drained"}
        self.requests.switchover = True
        self.evaluate()
        return {"ok": True, "message": f"handing the role over to {self.cfg.peer_name}"}

    async def failback(self) -> dict[str, Any]:
        if self.cfg.is_primary and self.sm.state == State.ACTIVE:
            return {"ok": False, "error": f"{self.cfg.name} is the primary and already active"}
        if not self.cfg.is_primary and self.sm.state != State.ACTIVE:
            return {"ok": False, "error": f"{self.cfg.name} is not active; nothing to fail back"}
        if self.replication is not None and self.sm.state == State.ACTIVE:
            drained, why = await self.replication.drain_for_switchover()
            if not drained:
                return {"ok": False, "error": why}
        self.requests.failback = True
        self.evaluate()
        return {"ok": True, "message": "failing back to the primary"}

    async def takeover(self, force: bool) -> dict[str, Any]:
        if self.replication is not None and self.sm.state == State.STANDBY:
            # A stale standby: refused without --force; with it, the override is armed (loudly) and the role is
            # still taken only the usual way, with the peer silent and the witness lease granted.
            reply = self.replication.request_takeover(force)
            if reply is not None:
                self.evaluate()
                return reply
        # The role is only ever taken with the lease; a forced takeover would be split brain on demand.
        return {"ok": False, "error": "takeover is automatic and needs the witness lease; use switchover on the active"}

    def status(self) -> dict[str, Any]:
        return status_model.status(self)


class _Requests:
    """What the operator (or the daemon's own shutdown) asked for; cleared when the head becomes active."""

    def __init__(self) -> None:
        self.shutdown = False
        self.switchover = False
        self.failback = False


class _Handover:
    """This head's handover promise to its peer, and the peer's handover this head already took."""

    def __init__(self) -> None:
        self.until: float | None = None
        self.id = 0  # our sequence number when our latest handover began: the peer takes each one once
        self.cause = Cause.SWITCHOVER
        # (peer incarnation, handover id) of the peer's handover we took the role for: never taken twice, so two
        # heads that hand over in quick succession cannot bounce the role back and forth
        self.taken: tuple[int | None, int] | None = None
