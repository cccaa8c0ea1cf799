"""The HA timeline: a head's stored events, and the failovers and refused takeovers they add up to.

The HA daemon stores every event as one JSON line in ``STATE_DIR/ha/events.jsonl`` (rotated: ``.1`` ... ``.4``;
``haoscar.events.JsonlStore``). A role gain is a run of events on the head that gains it:

    role standby -> takeover (cause)   the takeover began (a dead peer, a handover, a cold start)
    role takeover -> starting          the witness lease was granted
    vip.up, resource.started ...       the steps
    role starting -> active
    failover                           the measurement: ``took_s`` (from the last heartbeat heard from the peer,
                                       or the handover, to VIP and services up), ``since_dead_s``, ``kind``
                                       (failover / switchover / start), ``cause`` and the steps' ``timeline``

A takeover that ends in ``role takeover|starting -> standby`` (no lease: ``not-entitled``, or
``takeover-failed``) is an aborted takeover. A standby that refuses to take over raises a standing warning, one
event when raised and one ``<kind>.ok`` when cleared: ``replication.refused`` (its replicated copy is stale) and
``lease.denied`` (the witness says the silent peer still holds the lease); a refusal also ends when that head
gains the role after all (``haoscar ha takeover --force``). These rules are here, once: the web
console's dashboard, its JSON API and its Prometheus metrics all read them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.errors import FieldError
from haoscar.events import Event, JsonlStore, events_path

__all__ = [
    "REFUSAL_KINDS",
    "Failover",
    "Refusal",
    "Timeline",
    "TimelineEvent",
    "TimelineRequest",
    "pair_events",
    "read_events",
    "timeline",
]

# Standing warnings that mean "this standby would take over but does not" (ha/health.py).
REFUSAL_KINDS = ("replication.refused", "lease.denied")
MAX_EVENTS = 2000
# The newest part of the store that is read (the pairing runs over it): a few thousand events, so the dashboard's
# poll every second stays cheap even when a flood filled the 80 MiB the store may keep.
READ_BUDGET = 4 * 1024 * 1024
# Steps of the ``failover`` event's timeline, in the order they happen (ha/daemon.py, ha/actions.py).
STEPS = ("last_heard", "dead_declared", "takeover", "probe_done", "vip_added", "garp_sent", "services_up")


@dataclass(frozen=True)
class TimelineRequest:
    limit: int = 200
    """How many of the newest events to list (the failovers are paired over every stored event)."""


@dataclass(frozen=True)
class TimelineEvent:
    wall: float
    node: str
    kind: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Failover:
    """One role gain, measured by the head that gained it."""

    node: str
    kind: str
    """failover (the peer was dead), switchover (a handover: switchover, failback, ...) or start (cold start)."""
    cause: str
    reason: str
    began_wall: float
    """When the takeover began (the ``role -> takeover`` event; without it, the ``failover`` event less took_s)."""
    active_wall: float
    took_ms: float
    """From the last heartbeat heard from the peer (or the handover) to VIP and services up."""
    since_dead_ms: float | None
    """From declaring the peer dead to VIP and services up (None without a dead peer)."""
    steps_ms: dict[str, float] = field(default_factory=dict)
    """Each step of the takeover, in ms after ``last_heard`` (the ``failover`` event's timeline)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Refusal:
    """A standby that would have taken over but did not: a refusal (standing warning) or an aborted takeover."""

    node: str
    kind: str
    """replication.refused, lease.denied or takeover.aborted."""
    message: str
    wall: float
    cleared_wall: float | None = None
    """When it ended (the ``.ok`` event); None while it stands, or for an aborted takeover (it is over)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timeline:
    source: str
    """The event store that was read."""
    events: list[TimelineEvent]
    """The newest ``limit`` events, newest first."""
    failovers: list[Failover]
    """Every role gain in the store, newest first."""
    refusals: list[Refusal]
    """Every refused or aborted takeover in the store, newest first."""

    @property
    def last_failover(self) -> Failover | None:
        """The newest role gain that moved the role between heads (a cold start is not one)."""
        return next((f for f in self.failovers if f.kind != "start"), None)

    def as_dict(self) -> dict[str, Any]:
        last = self.last_failover
        return {
            "source": self.source,
            "events": [e.as_dict() for e in self.events],
            "failovers": [f.as_dict() for f in self.failovers],
            "refusals": [r.as_dict() for r in self.refusals],
            "last_failover": None if last is None else last.as_dict(),
        }


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) * 1000, 1)


def _steps(raw: Any) -> dict[str, float]:
    """The takeover's monotonic stamps as ms after the last heartbeat heard, in the order they happen."""
    if not isinstance(raw, dict) or not isinstance(raw.get("last_heard"), int | float):
        return {}
    zero = float(raw["last_heard"])
    order = {step: n for n, step in enumerate(STEPS)}
    stamps = sorted(
        ((str(k), float(v)) for k, v in raw.items() if isinstance(v, int | float)),
        key=lambda kv: (kv[1], order.get(kv[0], len(STEPS))),
    )
    return {step: round((at - zero) * 1000, 1) for step, at in stamps}


def _failover(event: Event, began: Event | None) -> Failover:
    data = event.data
    took = float(data.get("took_s") or 0.0)
    reason = event.message
    if began is not None:
        # "standby -> takeover: <reason>": the reason the decision gave, not the measurement's wording
        reason = began.message.split(": ", 1)[-1]
    return Failover(
        node=event.node,
        kind=str(data.get("kind", "start")),
        cause=str(data.get("cause", "")),
        reason=reason,
        began_wall=began.wall if began is not None else round(event.wall - took, 3),
        active_wall=event.wall,
        took_ms=_ms(took) or 0.0,
        since_dead_ms=_ms(data.get("since_dead_s")),
        steps_ms=_steps(data.get("timeline")),
    )


def _role(event: Event) -> tuple[str, str]:
    return str(event.data.get("old", "")), str(event.data.get("new", ""))


def _clear(refusals: list[Refusal], index: int, wall: float) -> None:
    old = refusals[index]
    refusals[index] = Refusal(old.node, old.kind, old.message, old.wall, wall)


def pair_events(events: list[Event]) -> tuple[list[Failover], list[Refusal]]:
    """The failovers and refusals in ``events`` (oldest first, any number of heads), both newest first."""
    failovers: list[Failover] = []
    refusals: list[Refusal] = []
    began: dict[str, Event] = {}  # per head: its takeover under way
    standing: dict[tuple[str, str], int] = {}  # (head, kind) -> index in refusals of the refusal still standing
    for event in events:
        node = event.node
        if event.kind == "role":
            old, new = _role(event)
            if new == "takeover":
                began[node] = event
            elif old in ("takeover", "starting") and new not in ("starting", "active"):
                start = began.pop(node, None)
                refusals.append(Refusal(node, "takeover.aborted", event.message, (start or event).wall))
            elif new in ("init", "standby", "stopped") and old not in ("takeover", "starting"):
                began.pop(node, None)
        elif event.kind == "failover":
            failovers.append(_failover(event, began.pop(node, None)))
            for key in [key for key in standing if key[0] == node]:  # it took the role after all (forced): over
                _clear(refusals, standing.pop(key), event.wall)
        elif event.kind in REFUSAL_KINDS:
            if (node, event.kind) not in standing:  # a coalesced repeat of a standing warning is the same one
                standing[(node, event.kind)] = len(refusals)
                refusals.append(Refusal(node, event.kind, event.message, event.wall))
        elif event.kind.endswith(".ok") and (node, event.kind[:-3]) in standing:
            _clear(refusals, standing.pop((node, event.kind[:-3])), event.wall)
        elif event.kind == "daemon.start":
            began.pop(node, None)  # a restart ends whatever was under way
    failovers.sort(key=lambda f: f.active_wall, reverse=True)
    refusals.sort(key=lambda r: r.wall, reverse=True)
    return failovers, refusals


def _tail_lines(path: Path, budget: int) -> tuple[list[str], int]:
    """The whole lines of the last ``budget`` bytes of ``path`` (a partial first line dropped), and the bytes read."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - budget)
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return [], 0
    lines = data.decode(errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines, len(data)


def read_events(env: Env, budget: int = READ_BUDGET) -> tuple[str, list[Event]]:
    """This head's newest stored events (the live file, then the rotated ones, at most ``budget`` bytes in all),
    oldest first, and where they were read; a torn line from a crash is skipped."""
    store = JsonlStore(events_path(env.state_dir))
    chunks: list[list[str]] = []
    for index in range(store.files):
        if budget <= 0:
            break
        lines, used = _tail_lines(store.rotated(index), budget)
        chunks.append(lines)
        budget -= used
    events: list[Event] = []
    for lines in reversed(chunks):
        for line in lines:
            try:
                events.append(Event.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
    events.sort(key=lambda e: e.wall)  # rotation keeps the order; a clock step may not
    return str(store.path), events


def timeline(env: Env, request: TimelineRequest) -> Timeline:
    """This head's events, newest first, with the failovers and refused takeovers they hold."""
    if not 1 <= request.limit <= MAX_EVENTS:
        raise FieldError("limit", f"{request.limit}: give between 1 and {MAX_EVENTS} events", sep=" ")
    source, events = read_events(env)
    failovers, refusals = pair_events(events)
    newest = [TimelineEvent(e.wall, e.node, e.kind, e.severity, e.message) for e in reversed(events[-request.limit :])]
    return Timeline(source, newest, failovers, refusals)
