"""Both heads as the web console shows them: what ``haoscar ha status`` shows (same source: the local daemon's
control socket and the peer's own status over HTTP, ``commands.ha.status``), as typed rows.

Heartbeat loss per network: a head sends each heartbeat on every network it shares with its peer at once, so the
peer's best network received them all (or lost as many as it did); ``loss`` is the share a network missed of what
the best one received, since the listening daemon started (0 on every network when none loses more than the
others; ``up`` and ``last_heard_ms`` say whether a network is heard at all now).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.ha import HaStatusRequest, status
from haoscar.errors import UserError

__all__ = ["HeadView", "Heads", "HeadsRequest", "NetworkView", "ResourceView", "head_view", "heads", "network_views"]


@dataclass(frozen=True)
class HeadsRequest:
    timeout: float = 1.0
    """Seconds to wait for the peer's status (as ``haoscar ha status --timeout``)."""


@dataclass(frozen=True)
class NetworkView:
    name: str
    up: bool
    last_heard_ms: int | None
    received: int
    loss: float | None
    """Share of the peer's heartbeats this network missed, relative to the best network (0.0 - 1.0)."""


@dataclass(frozen=True)
class ResourceView:
    name: str
    kind: str
    state: str
    restarts: int


@dataclass(frozen=True)
class HeadView:
    name: str
    reachable: bool
    error: str = ""
    """Why this head's own status could not be read (only the local head's view of it is then known)."""
    role: str = ""
    """primary or standby: the head's configured role."""
    state: str = ""
    """The role state (active, standby:catching-up ...)."""
    degraded: bool = False
    vip_held: bool = False
    lease_valid: bool = False
    lease_remaining_s: float | None = None
    lease_holder: str | None = None
    lease_holder_remaining_s: float | None = None
    witness: bool = False
    peer_name: str = ""
    networks: list[NetworkView] = field(default_factory=list)
    """How this head hears its peer, per network."""
    resources: list[ResourceView] = field(default_factory=list)
    replication_role: str | None = None
    replication_lag_s: float | None = None
    replication_stale: bool = False
    files_pending: int | None = None
    last_failover: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Heads:
    heads: list[HeadView] = field(default_factory=list)
    """The local head first, then its peer (its own status, or what the local head hears of it)."""
    error: str = ""
    """Why no head's status could be read (no HA daemon here)."""

    @property
    def active(self) -> str | None:
        return next((h.name for h in self.heads if h.state == "active"), None)

    def as_dict(self) -> dict[str, Any]:
        return {"heads": [h.as_dict() for h in self.heads], "active": self.active, "error": self.error}


def network_views(networks: dict[str, Any]) -> list[NetworkView]:
    """The per-network heartbeat rows of a head's ``peer.networks`` status, with the loss each shows."""
    best = max((int(info.get("received") or 0) for info in networks.values()), default=0)
    out = []
    for name, info in networks.items():
        received = int(info.get("received") or 0)
        loss = round(1 - received / best, 4) if best else None
        heard = info.get("last_heard_ms")
        out.append(NetworkView(str(name), bool(info.get("up")), None if heard is None else int(heard), received, loss))
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def head_view(status_: dict[str, Any]) -> HeadView:
    """One head's own status (``haoscar ha status --json``'s local or reachable peer) as a row."""
    lease, peer, repl = status_.get("lease") or {}, status_.get("peer") or {}, status_.get("replication") or {}
    resources = [
        ResourceView(str(r.get("name")), str(r.get("kind", "")), str(r.get("state")), int(r.get("total_restarts") or 0))
        for r in status_.get("resources") or []
    ]
    return HeadView(
        name=str(status_.get("node")),
        reachable=True,
        role=str(status_.get("role") or ""),
        state=str(status_.get("state_detail") or status_.get("state") or ""),
        degraded=bool(status_.get("degraded")),
        vip_held=bool((status_.get("vip") or {}).get("held")),
        lease_valid=bool(lease.get("valid")),
        lease_remaining_s=_float(lease.get("remaining_s")),
        lease_holder=lease.get("holder"),
        lease_holder_remaining_s=_float(lease.get("holder_remaining_s")),
        witness=bool(lease.get("witness")),
        peer_name=str(peer.get("node") or ""),
        networks=network_views(peer.get("networks") or {}),
        resources=resources,
        replication_role=repl.get("role"),
        replication_lag_s=_float(repl.get("lag_s")),
        replication_stale=bool(repl.get("standby_stale") or repl.get("own_copy_stale")),
        files_pending=repl.get("files_pending"),
        last_failover=status_.get("last_failover"),
        warnings=[str(w) for w in status_.get("warnings") or []],
    )


def _unreachable(local: dict[str, Any], peer: dict[str, Any]) -> HeadView:
    seen = local.get("peer") or {}
    return HeadView(
        name=str(peer.get("node") or seen.get("node")),
        reachable=False,
        error=str(peer.get("error") or "no answer"),
        state=f"{seen.get('state', 'unknown')} (as {local.get('node')} hears it)",
    )


def heads(env: Env, request: HeadsRequest) -> Heads:
    """Both heads now; without a local HA daemon, why (``error``) and no heads."""
    try:
        both = status(env, HaStatusRequest(timeout=request.timeout))
    except UserError as exc:
        if request.timeout <= 0:
            raise
        return Heads(error=str(exc))
    local = head_view(both.local)
    peer = head_view(both.peer) if both.peer.get("reachable") else _unreachable(both.local, both.peer)
    return Heads([local, peer])
