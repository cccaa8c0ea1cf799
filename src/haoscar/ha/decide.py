"""The pure decision step: a snapshot of what a head knows -> the actions to take now.

Nothing here reads a clock, a socket or a file: ``View`` carries the times (monotonic seconds) and facts, and
``decide`` returns actions that the daemon carries out. The rules, in words:

- A standby goes for the role (TAKEOVER) when the peer has been silent on every network for ``dead`` seconds,
  when the peer hands the role over, or at cold start when nobody is active and it is the preferred primary (the
  standby waits ``dead`` more seconds so the primary wins when both are healthy).
- In TAKEOVER it needs the witness lease (or, with no witness, a fence of the peer) before STARTING; a peer that
  shows up active again sends it back to STANDBY.
- An active head keeps the role while its lease view is valid, or while the peer confirms it sees this head as
  active recently enough that the peer cannot have declared it dead yet (``peer_guard_until``): then a lost
  witness is only a warning. Otherwise it drops the VIP at once and demotes.
- Switchover, failback and an escalated service demote with a handover to the peer.
"""

from __future__ import annotations

from dataclasses import dataclass

from haoscar.ha.state import State


@dataclass(frozen=True)
class View:
    now: float
    state: State
    state_since: float
    started: float
    is_primary: bool
    dead: float
    startup_wait: float
    handover_timeout: float
    witness_configured: bool
    fencing_configured: bool
    failback_auto: bool
    failback_stable: float
    # the peer, as its authenticated heartbeats describe it
    peer_last_heard: float | None = None
    peer_state: State | None = None
    peer_healthy: bool = False
    peer_all_links: bool = False
    peer_handover_to_me: bool = False
    peer_wants_failback: bool = False
    peer_guard_until: float | None = None
    # the witness lease, as this head's monotonic clock sees it
    lease_until: float | None = None
    # results of long actions (None while running or not started)
    promote_result: str | None = None
    demote_result: str | None = None
    resources_escalated: bool = False
    # operator requests and our own promises
    shutdown: bool = False
    switchover_requested: bool = False
    failback_requested: bool = False
    handing_over_until: float | None = None
    stable_since: float | None = None

    @property
    def peer_alive(self) -> bool:
        return self.peer_last_heard is not None and self.now - self.peer_last_heard < self.dead

    @property
    def lease_valid(self) -> bool:
        return self.lease_until is not None and self.now < self.lease_until

    @property
    def peer_guard(self) -> bool:
        return self.peer_guard_until is not None and self.now < self.peer_guard_until

    @property
    def entitled(self) -> bool:
        """May this head hold the VIP right now?"""
        if not self.witness_configured:
            return True  # it got the role through a fence or a handover; only a peer that is active again ends it
        return self.lease_valid or self.peer_guard


@dataclass(frozen=True)
class Go:
    state: State
    reason: str


@dataclass(frozen=True)
class Promote:
    """Start the takeover task: fence the peer if needed, probe that nobody answers for the VIP, add the VIP,
    announce it, start services."""

    reason: str
    fence: bool
    handover: bool


@dataclass(frozen=True)
class Demote:
    """Start the demotion task. ``urgent``: drop the VIP first (lease lost) rather than after the services."""

    reason: str
    urgent: bool
    handover: bool
    final: State = State.STANDBY


Action = Go | Promote | Demote


def _standby_wants_role(v: View) -> tuple[bool, str, bool]:
    """(go, why, handover) for a standby head."""
    if v.handing_over_until is not None and v.now < v.handing_over_until:
        return False, "", False
    if v.peer_handover_to_me and v.peer_alive and v.peer_state in (State.STANDBY, State.STOPPING, State.STOPPED):
        return True, "the peer handed the role over", True
    up_for = v.now - v.started
    if not v.peer_alive:
        if up_for < v.startup_wait:
            return False, "", False
        return True, "the peer is silent on every network", False
    if v.peer_state in (State.INIT, State.STANDBY, State.FAILED, State.STOPPED):
        # Nobody is active (cold start, or the active stepped down without a handover).
        if v.is_primary and up_for >= v.dead:  # the peer is heard and is not active: no need to wait longer
            return True, "nobody is active and this is the preferred primary", False
        primary_out = not v.peer_healthy or v.peer_state in (State.FAILED, State.STOPPED)
        if not v.is_primary and primary_out and up_for >= v.startup_wait + v.dead:
            return True, "nobody is active and the primary is not eligible", False
        if not v.is_primary and v.now - v.state_since >= v.startup_wait + 2 * v.dead:
            return True, "nobody is active and the primary did not take the role", False
    return False, "", False


def decide(v: View) -> list[Action]:
    s = v.state
    if v.shutdown:
        if s in (State.ACTIVE, State.STARTING):
            return [Demote("shutting down", urgent=False, handover=v.peer_alive, final=State.STOPPED)]
        if s in (State.INIT, State.STANDBY, State.TAKEOVER, State.FAILED):
            return [Go(State.STOPPED, "shutting down")]
        if s == State.STOPPING and v.demote_result is not None:
            return [Go(State.STOPPED, "shutting down")]
        return []

    if s == State.INIT:
        return [Go(State.STANDBY, "started")]

    if s == State.STANDBY:
        go, why, handover = _standby_wants_role(v)
        return [Go(State.TAKEOVER, why)] if go else []

    if s == State.TAKEOVER:
        peer_active = v.peer_alive and v.peer_state in (State.ACTIVE, State.STARTING)
        if peer_active:
            return [Go(State.STANDBY, "the peer is active")]
        handover = v.peer_handover_to_me and v.peer_alive
        if v.witness_configured:
            if v.lease_valid:
                # A live peer that handed over has dropped the VIP itself; any other peer may still hold it.
                return [
                    Go(State.STARTING, "holds the witness lease"),
                    Promote("holds the witness lease", fence=v.fencing_configured and not handover, handover=handover),
                ]
            if v.now - v.state_since > v.handover_timeout:
                return [Go(State.STANDBY, "the witness did not grant the lease")]
            return []
        if handover:
            return [Go(State.STARTING, "the peer handed over"), Promote("handover", fence=False, handover=True)]
        if v.fencing_configured:
            return [
                Go(State.STARTING, "no witness: fencing the peer"),
                Promote("peer dead", fence=True, handover=False),
            ]
        if v.now - v.state_since > v.handover_timeout:
            return [Go(State.STANDBY, "no witness and no fencing: a silent peer is never taken over")]
        return []

    if s == State.STARTING:
        if v.promote_result == "ok":
            if v.entitled:
                return [Go(State.ACTIVE, "VIP and services up")]
            return [Demote("lease lost while starting", urgent=True, handover=False)]
        if v.promote_result is not None:
            return [Demote(f"takeover failed: {v.promote_result}", urgent=True, handover=False)]
        if not v.entitled:
            return [Demote("lease lost while starting", urgent=True, handover=False)]
        return []

    if s == State.ACTIVE:
        if not v.entitled:
            return [Demote("lease expired and the peer does not confirm this head", urgent=True, handover=False)]
        if v.peer_alive and v.peer_state == State.ACTIVE and not v.witness_configured and not v.is_primary:
            # Two actives can only meet here after a partition healed without a witness: the standby yields.
            return [Demote("the primary is active too", urgent=True, handover=False)]
        if v.resources_escalated:
            return [Demote("a service failed too often", urgent=False, handover=v.peer_alive and v.peer_healthy)]
        peer_ready = v.peer_alive and v.peer_healthy and v.peer_state == State.STANDBY
        if v.switchover_requested and peer_ready:
            return [Demote("switchover requested", urgent=False, handover=True)]
        if not v.is_primary and peer_ready and (v.peer_wants_failback or v.failback_requested):
            return [Demote("failback to the primary", urgent=False, handover=True)]
        return []

    if s == State.STOPPING:
        if v.demote_result == "ok":
            return [Go(State.STANDBY, "demoted")]
        if v.demote_result is not None:
            return [Go(State.FAILED, f"a resource would not stop: {v.demote_result}")]
        return []

    if s == State.FAILED:
        # The peer fences a FAILED head before it takes over; if that head comes back clean it rejoins as standby.
        return []
    return []


def wants_failback(v: View) -> bool:
    """Should a primary in standby ask the active standby head to hand the role back (``failback: auto``)?"""
    if not v.is_primary or v.state != State.STANDBY or not v.failback_auto:
        return False
    if not (v.peer_alive and v.peer_state == State.ACTIVE and v.peer_all_links):
        return False
    return v.stable_since is not None and v.now - v.stable_since >= v.failback_stable
