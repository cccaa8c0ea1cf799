"""The web console's dashboard in one read: both heads, the timeline, and the last failover's measured time.

The last failover is the newest role move between heads (not a cold start) that either source knows: the heads'
``last_failover`` (``haoscar ha status``) or the event store's ``failover`` events (``commands.timeline``). Right
after a crash both say the same; the store also remembers failovers from before a daemon restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.heads_view import Heads, HeadsRequest, heads
from haoscar.commands.timeline import Failover, Timeline, TimelineRequest, timeline

__all__ = ["Dashboard", "DashboardRequest", "dashboard", "latest_failover"]


@dataclass(frozen=True)
class DashboardRequest:
    timeout: float = 1.0
    """Seconds to wait for the peer's status."""
    limit: int = 50
    """How many of the newest events to show."""


@dataclass(frozen=True)
class Dashboard:
    heads: Heads
    timeline: Timeline
    last_failover: Failover | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.heads.as_dict(),
            "timeline": self.timeline.as_dict(),
            "last_failover": None if self.last_failover is None else self.last_failover.as_dict(),
        }


def _from_status(node: str, last: dict[str, Any]) -> Failover | None:
    try:
        took = float(last["took_s"])
        wall = float(last["wall"])
    except (KeyError, TypeError, ValueError):
        return None
    since_dead = last.get("since_dead_s")
    return Failover(
        node=node,
        kind=str(last.get("kind", "start")),
        cause=str(last.get("cause", "")),
        reason=str(last.get("reason", "")),
        began_wall=round(wall - took, 3),
        active_wall=wall,
        took_ms=round(took * 1000, 1),
        since_dead_ms=None if since_dead is None else round(float(since_dead) * 1000, 1),
    )


def latest_failover(both: Heads, tl: Timeline) -> Failover | None:
    """The newest role move between heads known to the heads' status or to the event store."""
    known = [tl.last_failover]
    known += [_from_status(h.name, h.last_failover) for h in both.heads if h.last_failover]
    moves = [f for f in known if f is not None and f.kind != "start"]
    if not moves:
        return None
    newest = max(f.active_wall for f in moves)
    # Records within a second of the newest describe the same move (the status and the event are stamped a few
    # microseconds apart); the store's record carries the steps, so it is preferred.
    same = [f for f in moves if newest - f.active_wall < 1.0]
    return max(same, key=lambda f: (bool(f.steps_ms), f.active_wall))


def dashboard(env: Env, request: DashboardRequest) -> Dashboard:
    both = heads(env, HeadsRequest(timeout=request.timeout))
    tl = timeline(env, TimelineRequest(limit=request.limit))
    return Dashboard(both, tl, latest_failover(both, tl))
