"""The role of a head as an explicit state machine: one table of allowed transitions, enforced by the setter."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Final

from haoscar.ha.cause import Cause


class State(IntEnum):
    INIT = 0  # just started: listening, not yet entitled to anything
    STANDBY = 1  # hot standby: heartbeats only, no VIP, no services
    TAKEOVER = 2  # asking the witness for the lease / fencing / probing that nobody answers for the VIP
    STARTING = 3  # holds the lease: adding the VIP, starting services
    ACTIVE = 4  # VIP and services up, lease renewed every interval
    STOPPING = 5  # demoting: services stopped in reverse, then the VIP dropped
    FAILED = 6  # a resource would not stop: stays down until the peer fenced it or an operator cleared it
    STOPPED = 7  # daemon exiting

    @property
    def label(self) -> str:
        return self.name.lower()


TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.INIT: frozenset({State.STANDBY, State.STOPPED}),
    State.STANDBY: frozenset({State.TAKEOVER, State.STOPPED}),
    State.TAKEOVER: frozenset({State.STARTING, State.STANDBY, State.STOPPED}),
    State.STARTING: frozenset({State.ACTIVE, State.STOPPING}),
    State.ACTIVE: frozenset({State.STOPPING}),
    State.STOPPING: frozenset({State.STANDBY, State.FAILED, State.STOPPED}),
    State.FAILED: frozenset({State.STANDBY, State.STOPPED}),
    State.STOPPED: frozenset(),
}

# States in which this head may hold the VIP; everything else must not have it.
HOLDS_VIP: Final = frozenset({State.STARTING, State.ACTIVE})
# States in which the head asks the witness for the lease every interval.
WANTS_LEASE: Final = frozenset({State.TAKEOVER, State.STARTING, State.ACTIVE})


class IllegalTransition(RuntimeError):
    pass


class StateMachine:
    def __init__(self, on_change: Callable[[State, State, str], None] | None = None) -> None:
        self._state = State.INIT
        self._on_change = on_change
        self.cause = Cause.DAEMON_START  # why the latest transition happened (read by ``on_change``)

    @property
    def state(self) -> State:
        return self._state

    def set(self, new: State, reason: str, cause: Cause = Cause.DAEMON_START) -> None:
        old = self._state
        if new == old:
            return
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"{old.label} -> {new.label} is not an allowed transition ({reason})")
        self._state = new
        self.cause = cause
        if self._on_change is not None:
            self._on_change(old, new, reason)
