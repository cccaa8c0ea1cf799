"""The pure decision step: a snapshot of what a head knows -> the actions to take now.

Nothing here reads a clock, a socket or a file: ``View`` carries the times (monotonic seconds) and facts, and
``decide`` returns actions that the daemon carries out. The rules, in words:

- A standby goes for the role (TAKEOVER) when the peer has been silent on every network for ``dead`` seconds,
  when the peer hands the role over, or at cold start when nobody is active and it is the preferred primary (the
  standby waits ``dead`` more seconds so the primary wins when both are healthy). A standby that has heard
  nobody since it started waits ``initdead`` (Heartbeat's initial dead time, 10 s by default) before it calls the
  peer dead, so a primary whose start is slow still wins; the preferred primary waits one dead time.
- With a witness, the standby first *probes* for the lease while it stays STANDBY (``lease_probe``); only a
  granted lease moves it to TAKEOVER, so a witness that keeps saying "the peer holds it" causes no role events.
- In TAKEOVER it needs the witness lease (or, with no witness, a fence of the peer) before STARTING; a peer that
  shows up active again sends it back to STANDBY.
- An active head keeps the role while its lease view is valid, or while the peer confirms it sees this head as
  active recently enough that the peer cannot have declared it dead yet (``peer_guard_until``): then a lost
  witness is only a warning. Otherwise it drops the VIP at once and demotes.
- Switchover, failback and an escalated service demote with a handover to the peer; so does an active head whose
  public side is lost (link down, or fewer ping targets answering than from the standby: ``public_side_lost``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from haoscar.ha.cause import Cause
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
    peer_handover_cause: Cause = Cause.SWITCHOVER
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
    # replication (``ha/replication_glue.py``): this head's own copy is stale / the administrator forced a takeover
    # anyway / it is catching up from the active peer / as the active head, nothing is pending for the standby
    repl_stale: bool = False
    repl_forced: bool = False
    repl_catching_up: bool = False
    repl_drained: bool = True
    # the standby's initial dead time (Heartbeat's ``initdead``); None: ``startup_wait``
    initdead: float | None = None
    # why the takeover under way began (set once this head went to TAKEOVER)
    takeover_cause: Cause | None = None
    # public health (``ha/public_health.py``): 0 = link lost, else 1 + ping targets answering; the peer's from its
    # heartbeats (None: it sends none)
    public_score: int = 1
    public_max: int = 1
    peer_public_score: int | None = None

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
    # The typed cause (``ha/cause.py``); out of ``==`` so an action compares by what it does and why in words.
    cause: Cause = field(default=Cause.DAEMON_START, compare=False)


@dataclass(frozen=True)
class Promote:
    """Start the takeover task: fence the peer if needed, probe that nobody answers for the VIP, add the VIP,
    announce it, start services. ``short_probe``: the probe may use the failover timeout (``short_probe()``)."""

    reason: str
    fence: bool
    handover: bool
    cause: Cause = field(default=Cause.START, compare=False)
    short_probe: bool = False


@dataclass(frozen=True)
class Demote:
    """Start the demotion task. ``urgent``: drop the VIP first (lease lost) rather than after the services."""

    reason: str
    urgent: bool
    handover: bool
    final: State = State.STANDBY
    cause: Cause = field(default=Cause.SHUTDOWN, compare=False)


Action = Go | Promote | Demote


_NO: tuple[bool, str, bool, Cause] = (False, "", False, Cause.START)


def _standby_wants_role(v: View) -> tuple[bool, str, bool, Cause]:
    """(go, why, handover, cause) for a standby head."""
    # A handover addressed to us is taken even while our own handover promise runs: a failback right after a
    # switchover must not leave the cluster without an active head until that promise ends.
    if v.peer_handover_to_me and v.peer_alive and v.peer_state in (State.STANDBY, State.STOPPING, State.STOPPED):
        return True, "the peer handed the role over", True, v.peer_handover_cause
    if v.handing_over_until is not None and v.now < v.handing_over_until and v.peer_alive:
        # Our handover promise keeps us from taking the role back while the peer, heard, takes it. A peer silent
        # for the dead time is not taking anything: it crashed, and waiting out the promise (3 s) only delays the
        # failover; the witness lease (or the fence) still decides who holds the role, as after any crash.
        return _NO
    if (v.repl_catching_up and v.peer_alive) or (v.repl_stale and not v.repl_forced):
        return _NO  # not ready: taking the role would lose the changes this head has not got
    up_for = v.now - v.started
    if not v.peer_alive:
        if up_for < _silent_start_wait(v):
            return _NO
        cause = Cause.TAKEOVER if v.repl_stale and v.repl_forced else Cause.FAILOVER
        return True, "the peer is silent on every network", False, cause
    if v.peer_state in (State.INIT, State.STANDBY, State.FAILED, State.STOPPED):
        # Nobody is active (cold start, or the active stepped down without a handover).
        if v.is_primary and up_for >= v.dead:  # the peer is heard and is not active: no need to wait longer
            return True, "nobody is active and this is the preferred primary", False, Cause.START
        primary_out = not v.peer_healthy or v.peer_state in (State.FAILED, State.STOPPED)
        if not v.is_primary and primary_out and up_for >= v.startup_wait + v.dead:
            return True, "nobody is active and the primary is not eligible", False, Cause.START
        # A healthy primary that is heard gets the whole initial dead time to take the role: a start slowed by
        # load must not hand the cold start to the standby.
        if not v.is_primary and v.now - v.state_since >= max(v.startup_wait, v.initdead or 0.0) + 2 * v.dead:
            return True, "nobody is active and the primary did not take the role", False, Cause.START
    return _NO


def _silent_start_wait(v: View) -> float:
    """How long after its start a head that hears no peer waits before it goes for the role.

    Once the peer was heard, nothing more than its dead time: it was there and went silent, like any crash (a
    longer wait here only delayed the failover of a pair that had run for a second or two). Never heard: the
    preferred primary with a witness waits one dead time - the lease keeps it safe even if the standby is active and
    merely unheard; the standby waits the long initial dead time (``initdead``), so that a primary starting slowly on
    a loaded host still wins. Without a witness the primary would fence the silent peer, so it waits
    ``startup_wait``."""
    if v.peer_last_heard is not None:
        return v.dead
    if v.is_primary:
        return v.dead if v.witness_configured else v.startup_wait
    return v.initdead if v.initdead is not None else v.startup_wait


def decide(v: View) -> list[Action]:
    if v.shutdown:
        return _shutting_down(v)
    step = _BY_STATE.get(v.state)
    return step(v) if step is not None else []


def _shutting_down(v: View) -> list[Action]:
    s, why = v.state, Cause.SHUTDOWN
    if s in (State.ACTIVE, State.STARTING):
        return [Demote("shutting down", urgent=False, handover=v.peer_alive, final=State.STOPPED, cause=why)]
    if s in (State.INIT, State.STANDBY, State.TAKEOVER, State.FAILED):
        return [Go(State.STOPPED, "shutting down", why)]
    if s == State.STOPPING and v.demote_result is not None:
        return [Go(State.STOPPED, "shutting down", why)]
    return []


def _init(v: View) -> list[Action]:
    return [Go(State.STANDBY, "started", Cause.DAEMON_START)]


def _standby(v: View) -> list[Action]:
    go, why, _handover, cause = _standby_wants_role(v)
    if not go:
        return []
    if v.witness_configured and not v.lease_valid:
        # Asking the witness is a probe made from standby, not a role change: a witness that keeps denying
        # (the peer is alive and renewing) must not make this head flap standby -> takeover -> standby.
        return []
    return [Go(State.TAKEOVER, why, cause)]


def _takeover(v: View) -> list[Action]:
    cause = v.takeover_cause or Cause.START
    peer_active = v.peer_alive and v.peer_state in (State.ACTIVE, State.STARTING)
    if peer_active:
        return [Go(State.STANDBY, "the peer is active", Cause.PEER_ACTIVE)]
    handover = v.peer_handover_to_me and v.peer_alive
    if v.witness_configured:
        if v.lease_valid:
            # A live peer that handed over has dropped the VIP itself; any other peer may still hold it.
            fence = v.fencing_configured and not handover
            promote = Promote("holds the witness lease", fence, handover, cause, short_probe(v, cause))
            return [Go(State.STARTING, "holds the witness lease", cause), promote]
        if v.now - v.state_since > v.handover_timeout:
            return [Go(State.STANDBY, "the witness did not grant the lease", Cause.NOT_ENTITLED)]
        return []
    if handover:
        return [
            Go(State.STARTING, "the peer handed over", cause),
            Promote("handover", fence=False, handover=True, cause=cause),
        ]
    if v.fencing_configured:
        if v.peer_alive and v.peer_state in (State.INIT, State.STANDBY):
            # Cold start: the peer is heard and says it is not active; fencing a healthy standby would only
            # take the cluster's spare away. The ARP probe still guards against a VIP that answers.
            return [
                Go(State.STARTING, "no witness: the peer is standby", cause),
                Promote("cold start", False, False, cause=cause),
            ]
        return [
            Go(State.STARTING, "no witness: fencing the peer", cause),
            Promote("peer dead", fence=True, handover=False, cause=cause),
        ]
    if v.now - v.state_since > v.handover_timeout:
        return [Go(State.STANDBY, "no witness and no fencing: a silent peer is never taken over", Cause.NOT_ENTITLED)]
    return []


def _starting(v: View) -> list[Action]:
    if v.promote_result == "ok":
        if v.entitled:
            return [Go(State.ACTIVE, "VIP and services up", v.takeover_cause or Cause.START)]
        return [Demote("lease lost while starting", urgent=True, handover=False, cause=Cause.LEASE_LOST)]
    if v.promote_result is not None:
        failed = f"takeover failed: {v.promote_result}"
        return [Demote(failed, urgent=True, handover=False, cause=Cause.TAKEOVER_FAILED)]
    if not v.entitled:
        return [Demote("lease lost while starting", urgent=True, handover=False, cause=Cause.LEASE_LOST)]
    return []


def _active(v: View) -> list[Action]:
    if not v.entitled:
        why = "lease expired and the peer does not confirm this head"
        return [Demote(why, urgent=True, handover=False, cause=Cause.LEASE_LOST)]
    if v.peer_alive and v.peer_state == State.ACTIVE and not v.witness_configured and not v.is_primary:
        # Two actives can only meet here after a partition healed without a witness: the standby yields.
        return [Demote("the primary is active too", urgent=True, handover=False, cause=Cause.PEER_ACTIVE)]
    if v.resources_escalated:
        handover = v.peer_alive and v.peer_healthy
        return [Demote("a service failed too often", urgent=False, handover=handover, cause=Cause.RESOURCE_FAILURE)]
    peer_ready = v.peer_alive and v.peer_healthy and v.peer_state == State.STANDBY
    if peer_ready and v.repl_drained and public_side_lost(v):
        why = "the public side is lost here and the standby reaches it better"
        return [Demote(why, urgent=False, handover=True, cause=Cause.PUBLIC_LINK_LOST)]
    if v.switchover_requested and peer_ready:
        return [Demote("switchover requested", urgent=False, handover=True, cause=Cause.SWITCHOVER)]
    if not v.is_primary and peer_ready and v.repl_drained and (v.peer_wants_failback or v.failback_requested):
        return [Demote("failback to the primary", urgent=False, handover=True, cause=Cause.FAILBACK)]
    return []


def _stopping(v: View) -> list[Action]:
    if v.demote_result == "ok":
        return [Go(State.STANDBY, "demoted", Cause.DEMOTED)]
    if v.demote_result is not None:
        return [Go(State.FAILED, f"a resource would not stop: {v.demote_result}", Cause.RESOURCE_STUCK)]
    return []


# FAILED and STOPPED decide nothing: the peer fences a FAILED head before it takes over; if that head comes back
# clean it rejoins as standby.
_BY_STATE = {
    State.INIT: _init,
    State.STANDBY: _standby,
    State.TAKEOVER: _takeover,
    State.STARTING: _starting,
    State.ACTIVE: _active,
    State.STOPPING: _stopping,
}


def public_side_lost(v: View) -> bool:
    """This head's public side is worse than the peer's: its link is lost, or fewer ping targets answer here
    than there (each already counted with hysteresis). A peer that reports nothing, or as bad, changes nothing:
    moving the role would not help the users."""
    return v.public_score < v.public_max and v.peer_public_score is not None and v.peer_public_score > v.public_score


def short_probe(v: View, cause: Cause) -> bool:
    """May the takeover's ARP probe use the short failover timeout? Only for a failover proper: the peer was
    declared dead (silent on every network for the dead time, not a handover, not a cold start), it is still
    silent, and this head holds the witness lease. The grant proves the old holder's own view of its lease ended
    (docs/ha-safety.md), so a live daemon there has dropped the VIP; what the probe still looks for is a kernel
    whose daemon cannot act (killed, frozen), and such a kernel answers ARP at once. Every other probe (a
    handover, a cold start, no witness, a re-probe while an old owner's lifetime runs out) keeps the full one."""
    return v.witness_configured and v.lease_valid and cause.peer_was_dead and not v.peer_alive


def lease_probe(v: View) -> str | None:
    """Why a standby head asks the witness for the lease (``acquire``) while staying standby, or None.

    Only a granted lease moves it on to TAKEOVER (``decide``); a denial leaves its role untouched."""
    if v.state != State.STANDBY or not v.witness_configured or v.shutdown:
        return None
    go, why, _, _ = _standby_wants_role(v)
    return why if go else None


def wants_failback(v: View) -> bool:
    """Should a primary in standby ask the active standby head to hand the role back (``failback: auto``)?"""
    if not v.is_primary or v.state != State.STANDBY or not v.failback_auto:
        return False
    if not (v.peer_alive and v.peer_state == State.ACTIVE and v.peer_all_links):
        return False
    if v.repl_catching_up or v.repl_stale:
        return False  # not ready to take the role back before its copy is current again
    return v.stable_since is not None and v.now - v.stable_since >= v.failback_stable


def stale_refusal(v: View) -> bool:
    """A standby whose replicated copy is stale sees the peer dead but will not take over (``--force`` would)."""
    return (
        v.state == State.STANDBY
        and v.repl_stale
        and not v.repl_forced
        and not v.peer_alive
        and v.now - v.started >= v.startup_wait
        and not v.shutdown
    )
