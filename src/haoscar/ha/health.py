"""Standing warnings of a head (one event when each is raised, one when it clears) and the health it watches
every tick: the peer per network, the witness, a stale standby refusing to take over, and how long the primary
has been a healthy standby (``failback: auto``)."""

from __future__ import annotations

from typing import Any

from haoscar.events import EventBus, Severity
from haoscar.ha.decide import stale_refusal
from haoscar.ha.host import Host
from haoscar.ha.public_health import PublicHealth
from haoscar.ha.state import State


class Warnings:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.active: dict[str, str] = {}

    def values(self) -> list[str]:
        return list(self.active.values())

    def __bool__(self) -> bool:
        return bool(self.active)

    def set(
        self, key: str, message: str | None, severity: Severity = "warning", ok: str | None = None, **data: Any
    ) -> None:
        """Raise (message) or clear (None) a standing warning; each change is one event (``ok``: the clear's text)."""
        if message is not None and self.active.get(key) != message:
            self.active[key] = message
            self.bus.event(key, message, severity, **data)
        elif message is None and key in self.active:
            del self.active[key]
            self.bus.event(key + ".ok", ok or f"{key} recovered")


class Health:
    def __init__(self, daemon: Host) -> None:
        self.d = daemon
        self.warnings = Warnings(daemon.bus)
        self.stable_since: float | None = None
        cfg = daemon.cfg
        # Its rounds run on the event loop from the first tick; a changed score is said and re-evaluated at once.
        self.public = PublicHealth(
            cfg.public_interface, cfg.ping_targets, cfg.ping_failures, cfg.ping_interval, on_change=self._public_changed
        )

    def _public_changed(self) -> None:
        self.public_warning()  # before the decision, so the warning names the role the loss was seen in
        self.d.evaluate()

    def watch(self, now: float) -> None:
        d, t = self.d, self.d.cfg.timings
        self.public.start()
        self.public_warning()
        if now - d.started < t.startup_wait:
            return
        alive = d.peer.alive_on(now, t.dead)
        peer_alive = any(alive.values())
        for network, up in alive.items():
            if peer_alive and not up:
                self.warnings.set(f"network.{network}", f"no heartbeat from {d.cfg.peer_name} on {network}: degraded")
            else:
                self.warnings.set(f"network.{network}", None)
        severity: Severity = "critical" if d.sm.state == State.ACTIVE else "warning"
        self.warnings.set("peer", None if peer_alive else f"{d.cfg.peer_name} is silent on every network", severity)
        if d.cfg.witness:
            last = d.lease.last_reply
            down = last is None or now - last > max(2 * t.dead, t.lease)
            self.warnings.set(
                "witness", "witness unreachable: no role change while the peer is heard" if down else None
            )
        ok = d.cfg.is_primary and d.sm.state == State.STANDBY and peer_alive and all(alive.values())
        if ok and d.escalated is None:
            self.stable_since = self.stable_since or now
        else:
            self.stable_since = None

    def public_warning(self) -> None:
        """One event when this head's public side is lost (link down or a ping target silent), one when it is back.
        On the standby it is only this warning; on the active head ``decide`` hands over when the peer does better."""
        public, d = self.public, self.d
        lost = public.score < public.max_score
        what = f"public link {d.cfg.public_interface} is down" if public.link_lost else ""
        if not what and lost:
            what = "no answer from ping target(s) " + ", ".join(str(t) for t in public.unreachable)
        role = "active" if d.sm.state == State.ACTIVE else "standby"
        self.warnings.set(
            "public.lost",
            f"{what} on {d.cfg.name} ({role})" if lost else None,
            "critical" if lost and d.sm.state == State.ACTIVE else "warning",
            ok=f"public side of {d.cfg.name} is healthy again",
            score=public.score,
            max_score=public.max_score,
        )

    def replication_tick(self, now: float) -> None:
        d, repl = self.d, self.d.replication
        if repl is None:
            return
        repl.tick(d.peer_alive(now) and d.peer.state in (State.ACTIVE, State.STARTING))
        refused = stale_refusal(d.view(now))
        why = repl.manager.persisted.stale_reason or "unknown reason"
        self.warnings.set(
            "replication.refused",
            f"{d.cfg.peer_name} is silent but this head's replicated data is stale ({why}): NOT taking over; "
            f"run `haoscar ha takeover --force` on {d.cfg.name} to take over anyway (the changes it missed are "
            "lost)"
            if refused
            else None,
            "critical",
            ok="no longer refusing a takeover on stale data",
        )

    def lease_denied(self, now: float, probe_since: float | None) -> None:
        """One warning while the witness keeps denying the standby's probe, one info when it ends."""
        d, t = self.d, self.d.cfg.timings
        # A crashed holder's lease runs out at the witness within one lease of our probe's start; a denial that
        # lasts longer means the peer is alive and renewing: it is only cut from us.
        denied = (
            probe_since is not None
            and now - probe_since > t.lease + t.interval
            and not d.lease.valid(now)
            and d.lease.last_reply is not None
            and d.lease.last_reply > probe_since
            and d.lease.holder == d.cfg.peer_name
        )
        self.warnings.set(
            "lease.denied",
            f"{d.cfg.peer_name} is silent on every network but the witness says it holds the lease: "
            "the peer is alive, no failover"
            if denied
            else None,
            ok=f"no longer asking for the lease: {d.cfg.peer_name} is heard again or its lease ended",
        )
