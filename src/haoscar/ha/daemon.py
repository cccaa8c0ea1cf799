"""``haoscar ha run``: one head's HA daemon.

One tick per heartbeat interval: send heartbeats on every shared network and a lease request (acquire when this
head wants or holds the role, query otherwise), renew the VIP's kernel lifetime while entitled, then take a snapshot
(``View``), call the pure ``decide`` and carry out its actions. A packet, a lease reply, the end of a long action or
the lease view's deadline also re-evaluate at once. Long actions (takeover: probe/fence/VIP/services; demotion)
run as tasks, so heartbeats and lease renewals never wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from haoscar.events import EventBus, Severity
from haoscar.ha.config import Link, NodeConfig
from haoscar.ha.control import control_path, serve_control
from haoscar.ha.decide import Action, Demote, Go, Promote, View, decide, lease_probe, stale_refusal, wants_failback
from haoscar.ha.fencing import FenceResult, fence
from haoscar.ha.lease import LeaseView
from haoscar.ha.peer import DropCounters, PeerView, SentLog
from haoscar.ha.replay import ReplayWindow
from haoscar.ha.replication_glue import ReplicationGlue
from haoscar.ha.state import HOLDS_VIP, WANTS_LEASE, State, StateMachine
from haoscar.ha.timing import LoopLagMonitor
from haoscar.ha.vip import Vip
from haoscar.ha.wire import KIND_HEARTBEAT, KIND_LEASE_REPLY, KIND_LEASE_REQUEST, Rejected, decode, encode


class Resources(Protocol):
    on_escalate: Callable[[str], None]

    async def start(self) -> None: ...
    async def stop(self) -> bool: ...
    def start_monitoring(self) -> None: ...
    def stop_monitoring(self) -> Awaitable[Any]: ...
    def snapshot(self) -> list[Any]: ...


class VipPort(Protocol):
    address: Any

    def add(self) -> None: ...
    def remove(self) -> bool: ...
    def present(self) -> bool: ...
    def announce(self, count: int = 3, gap: float = 0.02) -> None: ...
    async def probe(self, timeout: float) -> str | None: ...
    def close(self) -> None: ...


@dataclass
class Failover:
    reason: str
    took_s: float  # from the last heartbeat heard from the peer (or the request) to VIP and services up
    wall: float
    kind: str  # failover | switchover | failback | start
    # from the moment this head declared the peer dead (silent for dead_time) to VIP and services up; None when
    # the role came without a dead peer (handover, cold start)
    since_dead_s: float | None = None


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, Any], None]) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a DatagramTransport (isinstance fails on the selector's private class).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_packet(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable while a link is cut: expected
        pass


class Daemon:
    def __init__(
        self,
        cfg: NodeConfig,
        *,
        key: bytes,
        state_dir: Path,
        bus: EventBus,
        resources: Resources,
        vip: VipPort | None = None,
        replication: ReplicationGlue | None = None,
    ) -> None:
        self.cfg = cfg
        self.replication = replication  # None: ha.replication is off (or a test without it)
        self.key = key
        self.state_dir = state_dir
        self.bus = bus
        self.resources = resources
        resources.on_escalate = self._on_escalate
        t = cfg.timings
        self.vip: VipPort = vip or Vip(cfg.public_interface, cfg.vip, t.vip_lifetime, cfg.public_ip)
        self.sm = StateMachine(self._on_transition)
        self.incarnation = time.time_ns()
        self.seq = 0
        self.started = time.monotonic()
        self.state_since = self.started
        self.peer = PeerView(tuple(link.network for link in cfg.links))
        self.sent = SentLog()
        self.replay = ReplayWindow()
        self.drops = DropCounters()
        self.lease = LeaseView(t.lease, t.margin)
        self.vip_held = False
        self.promote_result: str | None = None
        self.demote_result: str | None = None
        self.escalated: str | None = None
        self.shutdown = False
        self.switchover_requested = False
        self.failback_requested = False
        self.handing_over_until: float | None = None
        self.handover_id = 0  # our sequence number when our latest handover began: the peer takes each one once
        # (peer incarnation, handover id) of the peer's handover we took the role for: never taken twice, so two
        # heads that hand over in quick succession cannot bounce the role back and forth
        self.handover_taken: tuple[int | None, int] | None = None
        self.stable_since: float | None = None
        # (last heard from the peer or now, reason, when the peer was declared dead / the role was wanted)
        self.takeover_cause: tuple[float, str, float] | None = None
        # A standby that wants the role asks the witness (``acquire``) while staying standby: since when, and why.
        self.probe_since: float | None = None
        self.probe_why: str | None = None
        self.last_failover: Failover | None = None
        self.last_fence: FenceResult | None = None
        self.warnings: dict[str, str] = {}
        self._links_up: dict[str, bool] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._lease_endpoint: _Endpoint | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._stopped = asyncio.Event()
        self._witness_ok: bool | None = None
        # The witness's latest word on whether it marks our standby stale (a reply's ``peer_marked``), and when.
        self._peer_marked: tuple[bool, float] | None = None
        self._marked_reply = asyncio.Event()
        if replication is not None:
            replication.set_stale_confirmer(self.confirm_peer_stale)
        self.status_urls: list[str] = []  # where this head serves its read-only status (set by the runner)
        self.loop_lag: LoopLagMonitor | None = None  # the event loop's lag, shown in status (set by the runner)
        # monotonic stamps of the latest takeover's steps (last heard, dead declared, lease, probe, VIP, GARP,
        # services), in the ``failover`` event: where the failover time goes
        self.timeline: dict[str, float] = {}
        self._peer_ok: bool | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def run(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # A VIP left by a previous life of this daemon is dropped before anything else, without announcing it.
        with contextlib.suppress(Exception):
            if self.vip.remove():
                self.bus.event("vip.stale", f"removed a VIP {self.cfg.vip} left from before this start", "warning")
        for link in self.cfg.links:
            self._endpoints[link.network] = await self._bind(link)
        # Start-up waits count from the moment this head can hear its peer, not from the object's creation.
        self.started = self.state_since = time.monotonic()
        _, proto = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._on_lease_packet), local_addr=("0.0.0.0", 0)
        )
        self._lease_endpoint = proto
        control = await serve_control(control_path(self.state_dir), self._control)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_shutdown)
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
            for endpoint in [*self._endpoints.values(), self._lease_endpoint]:
                if endpoint is not None and endpoint.transport is not None:
                    endpoint.transport.close()
            with contextlib.suppress(Exception):
                self.vip.remove()
            self.vip.close()
            self.bus.event("daemon.stop", f"{self.cfg.name} stopped")

    async def _bind(self, link: Link) -> _Endpoint:
        loop = asyncio.get_running_loop()

        def on_packet(data: bytes, addr: Any, network: str = link.network) -> None:
            self._on_heartbeat(network, data)

        _, proto = await loop.create_datagram_endpoint(
            lambda: _Endpoint(on_packet), local_addr=(str(link.local), self.cfg.port)
        )
        return proto

    def request_shutdown(self) -> None:
        self.shutdown = True
        self._evaluate()

    async def _ticker(self) -> None:
        interval = self.cfg.timings.interval
        next_at = time.monotonic()
        while True:
            self._tick()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # the loop was stalled: do not fire a burst of catch-up ticks
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    def _tick(self) -> None:
        now = time.monotonic()
        self._send_heartbeats(now)
        self._send_lease(now)
        if self.vip_held and self.sm.state in HOLDS_VIP and self._view(now).entitled:
            try:
                self.vip.add()  # renews the kernel lifetime: the dead man's switch
            except Exception as exc:
                self.bus.event("vip.error", f"could not renew {self.cfg.vip}: {exc}", "warning")
        self._watch_health(now)
        self._replication_tick(now)
        self._evaluate(now)

    # -- packets --------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _send_heartbeats(self, now: float) -> None:
        state = self.sm.state
        body_common = {
            "node": self.cfg.name,
            "inc": self.incarnation,
            "state": state.label,
            "healthy": self.escalated is None and state != State.FAILED,
            "all_links": all(self.peer.alive_on(now, self.cfg.timings.dead).values()),
            "sees": self.peer.state.label if self.peer.state is not None and self._peer_alive(now) else "unknown",
            "ack": self.peer.received_seq,
            "ack_inc": self.peer.incarnation,
            "handover": self.cfg.peer_name
            if self.handing_over_until is not None and now < self.handing_over_until
            else None,
            "handover_id": self.handover_id,
            "failback": self._wants_failback(now),
            "vip": self.vip_held,
            "lease": round(self.lease.remaining(now), 3),
        }
        for link in self.cfg.links:
            endpoint = self._endpoints.get(link.network)
            if endpoint is None or endpoint.transport is None:
                continue
            seq = self._next_seq()
            self.sent.record(seq, now)
            data = encode(KIND_HEARTBEAT, {**body_common, "seq": seq, "net": link.network}, self.key)
            endpoint.transport.sendto(data, (str(link.peer), self.cfg.port))

    def _send_lease(self, now: float) -> None:
        if not self.cfg.witness or self._lease_endpoint is None or self._lease_endpoint.transport is None:
            return
        op = "acquire" if self.sm.state in WANTS_LEASE or self.probe_why is not None else "query"
        self._lease_request(op, now)

    def _release_lease(self) -> None:
        self.lease.release()
        if not self.cfg.witness or self._lease_endpoint is None or self._lease_endpoint.transport is None:
            return
        self._lease_request("release", time.monotonic())

    def _lease_request(self, op: str, now: float) -> None:
        assert self._lease_endpoint is not None and self._lease_endpoint.transport is not None
        seq = self._next_seq()
        self.lease.sent(seq, now, op)
        body: dict[str, Any] = {"node": self.cfg.name, "inc": self.incarnation, "seq": seq, "op": op}
        if self.replication is not None:
            # The active head's word on its standby's copy rides on every renewal (and the release of a
            # handover); a forced takeover asks the witness to overlook this head's own stale mark.
            mark = self.replication.standby_stale_mark()
            if mark is not None:
                body["peer_stale"], body["stale_reason"] = mark[0], mark[1][:200]
            if self.replication.forced and op == "acquire":
                body["force"] = True
        data = encode(KIND_LEASE_REQUEST, body, self.key)
        for address in self.cfg.witness:
            self._lease_endpoint.transport.sendto(data, (str(address), self.cfg.witness_port))

    async def confirm_peer_stale(self) -> bool:
        """Before a change the standby lacks is acknowledged: the witness has recorded that the standby is stale
        (so it will not grant the standby the lease without --force). False when it could not be told within one
        lease: this head is then cut from both its peer and the witness and is about to step down."""
        if not self.cfg.witness or self._lease_endpoint is None:
            return True  # fencing only: nobody to tell (docs/replication.md)
        deadline = time.monotonic() + self.cfg.timings.lease
        while (now := time.monotonic()) < deadline:
            if self.sm.state != State.ACTIVE:
                return False
            self._marked_reply.clear()
            self._send_lease(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._marked_reply.wait(), min(self.cfg.timings.interval, deadline - now))
            if self._peer_marked is not None and self._peer_marked[0] and self._peer_marked[1] >= now:
                return True
        return False

    def _accept(self, data: bytes, kind: int, senders: tuple[str, ...]) -> dict[str, Any] | None:
        try:
            packet = decode(data, self.key)
        except Rejected as exc:
            self._drop(exc.reason)
            return None
        if packet.kind != kind:
            self._drop("wrong_kind")
            return None
        if packet.sender not in senders:
            self._drop("unknown_sender")
            return None
        if not self.replay.accept(packet.sender, packet.incarnation, packet.seq):
            self._drop("replay")
            return None
        return packet.body

    def _drop(self, reason: str) -> None:
        self.drops.drop(reason)
        count = self.drops.counts[reason]
        if count in (1, 10, 100, 1000) or count % 10000 == 0:  # visible, but a flood cannot flood the log
            self.bus.event("packet.dropped", f"dropped a {reason} packet ({count} so far)", "warning", reason=reason)

    def _on_heartbeat(self, network: str, data: bytes) -> None:
        body = self._accept(data, KIND_HEARTBEAT, (self.cfg.peer_name,))
        if body is None:
            return
        now = time.monotonic()
        before = self.peer.state
        self.peer.heard(network, body, now, self.incarnation)
        if self.peer.state != before:
            self._evaluate(now)

    def _on_lease_packet(self, data: bytes, addr: Any) -> None:
        witness_name = self.cfg.ha.witness.hostname if self.cfg.ha.witness else ""
        body = self._accept(data, KIND_LEASE_REPLY, (witness_name,))
        if body is None or body.get("to") != self.cfg.name:
            return
        now = time.monotonic()
        holder = body.get("holder")
        applied = self.lease.reply(
            int(body.get("nonce", -1)),
            bool(body.get("granted")),
            holder if isinstance(holder, str) else None,
            float(body.get("remaining", 0.0)),
            now,
        )
        if applied:
            self._witness_stale_word(body, now)
            self._evaluate(now)
            remaining = float(body.get("remaining", 0.0))
            asking = self.sm.state == State.TAKEOVER or self.probe_why is not None
            if asking and not body.get("granted") and 0 < remaining < self.cfg.timings.lease:
                # Ask again the moment the holder's lease runs out at the witness rather than at the next tick:
                # up to one heartbeat interval off every failover.
                if self._retry is not None:
                    self._retry.cancel()
                self._retry = asyncio.get_running_loop().call_later(remaining + 0.002, self._retry_lease)

    def _witness_stale_word(self, body: dict[str, Any], now: float) -> None:
        if isinstance(body.get("peer_marked"), bool):
            self._peer_marked = (body["peer_marked"], now)
            self._marked_reply.set()
        stale = body.get("stale")
        # Only a refusal of our own request for the role counts: between two renewals of the active head the
        # witness's mark can lag the active head's word (which reaches this standby directly).
        asked = self.sm.state == State.STANDBY and self.probe_why is not None
        refused_stale = asked and isinstance(stale, str) and not body.get("granted")
        if refused_stale and self.replication is not None and not self.replication.forced:
            # Cut off from the active head, this standby could not know; the witness does.
            self.replication.witness_says_stale(str(stale))

    def _retry_lease(self) -> None:
        self._retry = None
        if self.sm.state == State.TAKEOVER or self.probe_why is not None:
            self._send_lease(time.monotonic())

    # -- health and warnings --------------------------------------------------------------------------------
    def _peer_alive(self, now: float) -> bool:
        newest = self.peer.newest()
        return newest is not None and now - newest < self.cfg.timings.dead

    def _warn(
        self, key: str, message: str | None, severity: Severity = "warning", ok: str | None = None, **data: Any
    ) -> None:
        """Raise (message) or clear (None) a standing warning; each change is one event (``ok``: the clear's text)."""
        if message is not None and self.warnings.get(key) != message:
            self.warnings[key] = message
            self.bus.event(key, message, severity, **data)
        elif message is None and key in self.warnings:
            del self.warnings[key]
            self.bus.event(key + ".ok", ok or f"{key} recovered")

    def _watch_health(self, now: float) -> None:
        t = self.cfg.timings
        if now - self.started < t.startup_wait:
            return
        alive = self.peer.alive_on(now, t.dead)
        peer_alive = any(alive.values())
        for network, up in alive.items():
            if peer_alive and not up:
                self._warn(f"network.{network}", f"no heartbeat from {self.cfg.peer_name} on {network}: degraded")
            else:
                self._warn(f"network.{network}", None)
        severity: Severity = "critical" if self.sm.state == State.ACTIVE else "warning"
        self._warn("peer", None if peer_alive else f"{self.cfg.peer_name} is silent on every network", severity)
        if self.cfg.witness:
            last = self.lease.last_reply
            down = last is None or now - last > max(2 * t.dead, t.lease)
            message = None
            if down:
                message = "witness unreachable: no role change while the peer is heard"
            self._warn("witness", message)
        ok = self.cfg.is_primary and self.sm.state == State.STANDBY and peer_alive and all(alive.values())
        if ok and self.escalated is None:
            self.stable_since = self.stable_since or now
        else:
            self.stable_since = None

    def _replication_tick(self, now: float) -> None:
        repl = self.replication
        if repl is None:
            return
        repl.tick(self._peer_alive(now) and self.peer.state in (State.ACTIVE, State.STARTING))
        refused = stale_refusal(self._view(now))
        why = repl.manager.persisted.stale_reason or "unknown reason"
        self._warn(
            "replication.refused",
            f"{self.cfg.peer_name} is silent but this head's replicated data is stale ({why}): NOT taking over; "
            f"run `haoscar ha takeover --force` on {self.cfg.name} to take over anyway (the changes it missed are "
            "lost)"
            if refused
            else None,
            "critical",
            ok="no longer refusing a takeover on stale data",
        )

    def _wants_failback(self, now: float) -> bool:
        if not self.cfg.is_primary or self.sm.state != State.STANDBY:
            return False
        return self.failback_requested or wants_failback(self._view(now))

    # -- decide and act -------------------------------------------------------------------------------------
    def _peer_guard_until(self) -> float | None:
        """Until when the peer cannot have declared us dead: it acknowledged our packet ``ack`` while seeing us
        active and being standby itself, and it waits ``dead`` seconds of silence after hearing us."""
        if self.peer.sees_me != State.ACTIVE or self.peer.state != State.STANDBY:
            return None
        sent = self.sent.sent_at(self.peer.ack_seq)
        if sent is None:
            return None
        return sent + self.cfg.timings.dead - self.cfg.timings.margin

    def _view(self, now: float) -> View:
        t = self.cfg.timings
        return View(
            now=now,
            state=self.sm.state,
            state_since=self.state_since,
            started=self.started,
            is_primary=self.cfg.is_primary,
            dead=t.dead,
            startup_wait=t.startup_wait,
            handover_timeout=t.handover_timeout,
            witness_configured=bool(self.cfg.witness),
            fencing_configured=self.cfg.ha.fencing.method != "none",
            failback_auto=self.cfg.ha.failback == "auto",
            failback_stable=self.cfg.ha.failback_stable_s,
            peer_last_heard=self.peer.newest(),
            peer_state=self.peer.state,
            peer_healthy=self.peer.healthy,
            peer_all_links=all(self.peer.alive_on(now, t.dead).values()),
            peer_handover_to_me=self.peer.handover_to == self.cfg.name
            and (self.peer.incarnation, self.peer.handover_id) != self.handover_taken,
            peer_wants_failback=self.peer.wants_failback,
            peer_guard_until=self._peer_guard_until(),
            lease_until=self.lease.until,
            promote_result=self.promote_result,
            demote_result=self.demote_result,
            resources_escalated=self.escalated is not None,
            shutdown=self.shutdown,
            switchover_requested=self.switchover_requested,
            failback_requested=self.failback_requested,
            handing_over_until=self.handing_over_until,
            stable_since=self.stable_since,
            repl_stale=self.replication is not None and self.replication.own_copy_stale,
            repl_forced=self.replication is not None and self.replication.forced,
            repl_catching_up=self.replication is not None and self.replication.catching_up,
            repl_drained=self.replication is None or self.replication.drained_now(),
            initdead=t.initdead,
        )

    def _evaluate(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for _ in range(4):  # a transition can enable the next one (e.g. TAKEOVER -> STARTING) in the same instant
            actions = decide(self._view(now))
            if not actions:
                break
            for action in actions:
                self._apply(action, now)
        self._update_probe(now)
        self._schedule_wake(now)
        if self.sm.state == State.STOPPED:
            self._stopped.set()

    def _update_probe(self, now: float) -> None:
        """Start or end the standby's lease probe; one warning while the witness keeps denying it, one info at
        the end, never a role event per attempt."""
        why = lease_probe(self._view(now)) if self.sm.state == State.STANDBY else None
        started = why is not None and self.probe_why is None
        self.probe_why = why
        if why is None:
            self.probe_since = None
            if self.sm.state == State.STANDBY and self.lease.valid(now):
                self._release_lease()  # granted to a probe that is no longer wanted (the peer came back)
        elif started:
            self.probe_since = now
            self._send_lease(now)  # ask at once, not at the next tick
        t = self.cfg.timings
        # A crashed holder's lease runs out at the witness within one lease of our probe's start; a denial that
        # lasts longer means the peer is alive and renewing: it is only cut from us.
        denied = (
            self.probe_since is not None
            and now - self.probe_since > t.lease + t.interval
            and not self.lease.valid(now)
            and self.lease.last_reply is not None
            and self.lease.last_reply > self.probe_since
            and self.lease.holder == self.cfg.peer_name
        )
        self._warn(
            "lease.denied",
            f"{self.cfg.peer_name} is silent on every network but the witness says it holds the lease: "
            "the peer is alive, no failover"
            if denied
            else None,
            ok=f"no longer asking for the lease: {self.cfg.peer_name} is heard again or its lease ended",
        )

    def _schedule_wake(self, now: float) -> None:
        """Re-evaluate exactly when the lease view or the peer guard runs out (active), or when the peer's dead
        time ends (standby), not at the next tick."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self.sm.state == State.STANDBY:
            # A standby declares its peer dead the moment the dead time after the last heartbeat ends, not at the
            # next tick (up to one interval later): the lease probe starts at once.
            newest = self.peer.newest()
            deadline = None if newest is None else newest + self.cfg.timings.dead + 0.001
            if deadline is not None and deadline > now:
                loop = asyncio.get_running_loop()
                self._wake = loop.call_at(loop.time() + (deadline - now), self._evaluate)
            return
        if self.sm.state not in HOLDS_VIP:
            return
        deadlines = [d for d in (self.lease.until, self._peer_guard_until()) if d is not None and d > now]
        if deadlines:
            loop = asyncio.get_running_loop()
            self._wake = loop.call_at(loop.time() + (max(deadlines) - now), self._evaluate)

    def _apply(self, action: Action, now: float) -> None:
        if isinstance(action, Go):
            if action.state == State.TAKEOVER:
                peer_heard = self.peer.newest()
                cause = peer_heard if peer_heard is not None and not self._peer_alive(now) else now
                self.takeover_cause = (cause, action.reason, self.probe_since or now)
                self.timeline = {"last_heard": cause, "dead_declared": self.probe_since or now, "takeover": now}
                if self.peer.handover_to == self.cfg.name:
                    self.handover_taken = (self.peer.incarnation, self.peer.handover_id)
            self.sm.set(action.state, action.reason)
            if action.state == State.TAKEOVER and not self.lease.valid(now):
                self._send_lease(now)  # ask at once, not at the next tick
        elif isinstance(action, Promote):
            self.promote_result = None
            self._spawn(self._promote(action), "promote")
        elif isinstance(action, Demote):
            self.sm.set(State.STOPPING, action.reason)
            if action.urgent:
                self._drop_vip(action.reason)  # now, in this very callback: the lease view is ending
            self.demote_result = None
            self._spawn(self._demote(action), "demote")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_transition(self, old: State, new: State, reason: str) -> None:
        self.state_since = time.monotonic()
        severity: Severity = "warning" if new in (State.STOPPING, State.FAILED) else "info"
        if new == State.FAILED:
            severity = "critical"
        self.bus.event("role", f"{old.label} -> {new.label}: {reason}", severity, old=old.label, new=new.label)
        if new == State.ACTIVE:
            self.switchover_requested = False
            self.failback_requested = False
            self.handing_over_until = None
            cause, why, declared = self.takeover_cause or (self.state_since, "start", self.state_since)
            took = self.state_since - cause
            kind = "failover" if "silent" in why else "switchover" if "handed" in why else "start"
            since_dead = round(self.state_since - declared, 3) if kind == "failover" else None
            self.last_failover = Failover(why, round(took, 3), time.time(), kind, since_dead)
            detail = f", {since_dead * 1000:.0f} ms after declaring the peer dead" if since_dead is not None else ""
            self.bus.event(
                "failover",
                f"active after {took * 1000:.0f} ms ({why}){detail}",
                took_s=round(took, 3),
                since_dead_s=since_dead,
                kind=kind,
                timeline={step: round(at, 4) for step, at in self.timeline.items()},
            )
        if new == State.STANDBY:
            self.promote_result = None
        if self.replication is not None:
            self.replication.role_changed(new)  # starts a task: the direction follows the role

    def _drop_vip(self, reason: str) -> None:
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
        self._evaluate()

    async def _promote(self, action: Promote) -> None:
        t = self.cfg.timings
        must_fence = (not self.cfg.witness and action.fence) or self.peer.state == State.FAILED
        try:
            # Probed after a handover too (it costs one probe timeout): the old owner said it dropped the VIP, and
            # the probe makes sure no kernel still answers before we announce.
            holder = await self.vip.probe(t.probe_timeout)
            self.timeline["probe_done"] = time.monotonic()
            if holder is not None and action.fence:
                self.bus.event("vip.conflict", f"{holder} still answers for {self.cfg.vip}: fencing", "warning")
                must_fence = True
            elif holder is not None:
                # No fencing: the old owner's kernel drops the VIP when its lifetime runs out.
                deadline = time.monotonic() + t.vip_lifetime + 1.0
                while holder is not None and time.monotonic() < deadline:
                    await asyncio.sleep(t.interval / 2)
                    holder = await self.vip.probe(t.probe_timeout)
                if holder is not None:
                    raise RuntimeError(f"{holder} still answers for {self.cfg.vip}")
            if must_fence:
                result = await fence(self.cfg.ha.fencing, self.cfg.peer_name)
                self.last_fence = result
                self.bus.event(
                    "fence",
                    f"{result.method} {result.target}: {'ok' if result.ok else 'FAILED'} {result.message}",
                    "warning" if result.ok else "critical",
                    **result.as_dict(),
                )
                if not result.ok:
                    raise RuntimeError(f"fencing {self.cfg.peer_name} failed: {result.message}")
            if self.sm.state != State.STARTING or not self._view(time.monotonic()).entitled:
                raise RuntimeError("lost the right to the role while preparing")
            self.vip.add()
            self.vip_held = True
            self.timeline["vip_added"] = time.monotonic()
            # The first gratuitous ARP goes out in this very callback (one raw send): clients move to us now, not
            # after a thread hop; the rest of the burst follows from a thread.
            self.vip.announce(1)
            self.timeline["garp_sent"] = time.monotonic()
            self.bus.event("vip.up", f"{self.cfg.vip} on {self.cfg.public_interface}")
            await asyncio.sleep(0.02)
            await asyncio.to_thread(self.vip.announce, 2)
            await self.resources.start()
            self.timeline["services_up"] = time.monotonic()
            self.resources.start_monitoring()
            self.promote_result = "ok"
        except Exception as exc:
            self.promote_result = f"{type(exc).__name__}: {exc}"
        self._evaluate()

    async def _demote(self, action: Demote) -> None:
        ok = True
        try:
            with contextlib.suppress(Exception):
                await self.resources.stop_monitoring()
            ok = await self.resources.stop()
        except Exception as exc:
            self.bus.event("resource.error", f"stopping services failed: {exc}", "critical")
            ok = False
        self._drop_vip(action.reason)
        if action.handover and self.replication is not None:
            # Services stopped and VIP gone, so nothing changes here any more: the last changes reach the peer
            # before it is told to take over (and before the lease is released).
            await self.replication.final_drain()
        self._release_lease()
        self.escalated = None
        if action.handover:
            self.handing_over_until = time.monotonic() + self.cfg.timings.handover_timeout
            self.handover_id = self._next_seq()
            self.takeover_cause = None
            # Tell the peer now (VIP dropped, lease released), not at the next tick - a daemon that is shutting
            # down has no next tick.
            self._send_heartbeats(time.monotonic())
        self.demote_result = "ok" if ok else "a service would not stop"
        self._evaluate()

    # -- operator requests ----------------------------------------------------------------------------------
    async def _control(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if op == "status":
            return self.status()
        if op == "switchover":
            return await self.switchover()
        if op == "failback":
            return await self.failback()
        if op == "takeover":
            return await self.takeover(bool(request.get("force")))
        return {"ok": False, "error": f"unknown request {op!r}; use status, switchover, failback or takeover"}

    async def switchover(self) -> dict[str, Any]:
        now = time.monotonic()
        if self.sm.state != State.ACTIVE:
            return {
                "ok": False,
                "error": f"{self.cfg.name} is {self.sm.state.label}; run switchover on the active head",
            }
        if not (self._peer_alive(now) and self.peer.state == State.STANDBY and self.peer.healthy):
            return {"ok": False, "error": f"{self.cfg.peer_name} is not a healthy standby; switchover refused"}
        if self.replication is not None:
            drained, why = await self.replication.drain_for_switchover()
            if not drained:
                return {"ok": False, "error": why}
            if self.sm.state != State.ACTIVE:
                return {"ok": False, "error": f"{self.cfg.name} left the active role while replication drained"}
        self.switchover_requested = True
        self._evaluate()
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
        self.failback_requested = True
        self._evaluate()
        return {"ok": True, "message": "failing back to the primary"}

    async def takeover(self, force: bool) -> dict[str, Any]:
        if self.replication is not None and self.sm.state == State.STANDBY:
            # A stale standby: refused without --force; with it, the override is armed (loudly) and the role is
            # still taken only the usual way, with the peer silent and the witness lease granted.
            reply = self.replication.request_takeover(force)
            if reply is not None:
                self._evaluate()
                return reply
        # The role is only ever taken with the lease; a forced takeover would be split brain on demand.
        return {"ok": False, "error": "takeover is automatic and needs the witness lease; use switchover on the active"}

    # -- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        t = self.cfg.timings
        alive = self.peer.alive_on(now, t.dead)
        networks = {
            net: {
                "up": alive[net],
                "last_heard_ms": round((now - self.peer.last_heard[net]) * 1000)
                if net in self.peer.last_heard
                else None,
                "received": self.peer.received[net],
            }
            for net in self.peer.networks
        }
        peer_alive = any(alive.values())
        holder_view = self.lease.holder if self.lease.last_reply is not None else None
        resources = []
        for item in self.resources.snapshot():
            resources.append(item.to_dict() if hasattr(item, "to_dict") else dict(item))
        degraded = bool(self.warnings) or any(r.get("state") not in ("running", "stopped") for r in resources)
        return {
            "node": self.cfg.name,
            "role": self.cfg.role,
            "state": self.sm.state.label,
            "state_for_s": round(now - self.state_since, 3),
            "degraded": degraded,
            "warnings": sorted(self.warnings.values()),
            "vip": {"address": str(self.cfg.vip), "interface": self.cfg.public_interface, "held": self.vip_held},
            "peer": {
                "node": self.cfg.peer_name,
                "state": self.peer.state.label if self.peer.state is not None and peer_alive else "unknown",
                "alive": peer_alive,
                "healthy": self.peer.healthy and peer_alive,
                "holds_vip": bool(self.peer.last_body.get("vip")) and peer_alive,
                "lease_remaining_s": self.peer.last_body.get("lease") if peer_alive else None,
                "networks": networks,
                # where the peer serves its own status: one URL per shared network, the private one first
                "status_urls": [f"http://{link.peer}:{self.cfg.ha.status_port}/status" for link in self.cfg.links],
            },
            "status_urls": self.status_urls,
            "lease": {
                "witness": [str(a) for a in self.cfg.witness],
                "valid": self.lease.valid(now),
                "remaining_s": round(self.lease.remaining(now), 3),
                "holder": holder_view,
                "holder_remaining_s": round(self.lease.holder_remaining, 3),
                "witness_last_reply_ms": round((now - self.lease.last_reply) * 1000)
                if self.lease.last_reply is not None
                else None,
                "denials": self.lease.denials,
                "probing": self.probe_why,
            },
            "resources": resources,
            "dropped": self.drops.as_dict(),
            "fencing": {
                "method": self.cfg.ha.fencing.method,
                "last": self.last_fence.as_dict() if self.last_fence else None,
            },
            "last_failover": None
            if self.last_failover is None
            else {
                "kind": self.last_failover.kind,
                "reason": self.last_failover.reason,
                "took_s": self.last_failover.took_s,
                "since_dead_s": self.last_failover.since_dead_s,
                "wall": self.last_failover.wall,
            },
            "failback": self.cfg.ha.failback,
            "timings": t.as_dict(),
            "heartbeats_sent": self.seq,
            "replication": self.replication.status() if self.replication is not None else None,
            "state_detail": self.sm.state.label
            + (f":{sub}" if self.replication is not None and (sub := self.replication.substate()) else ""),
            # how late the event loop woke (worst since start, last, worst of the recent window): a stalled daemon,
            # not a dead peer, is what a large lag means
            "max_loop_lag_ms": self.loop_lag.status()["max_lag_ms"] if self.loop_lag is not None else None,
            "loop_lag": self.loop_lag.status() if self.loop_lag is not None else None,
        }
