"""What the daemon's parts (long actions, health, status model) see of the daemon: a Protocol, so the parts
depend on this module rather than on ``daemon`` (which depends on them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from haoscar.events import EventBus
from haoscar.ha.cause import Cause, Failover
from haoscar.ha.config import NodeConfig
from haoscar.ha.decide import View
from haoscar.ha.early_probe import EarlyProbe
from haoscar.ha.fencing import FenceResult
from haoscar.ha.lease import LeaseView
from haoscar.ha.peer import PeerView
from haoscar.ha.public_health import PublicHealth
from haoscar.ha.replication_glue import ReplicationGlue
from haoscar.ha.state import StateMachine
from haoscar.ha.timing import LoopLagMonitor
from haoscar.ha.transport import Packets


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
    def bring_up(self, step: Callable[[str], None] = ...) -> None: ...
    def remove(self) -> bool: ...
    def present(self) -> bool: ...
    def announce(self, count: int = 3, gap: float = 0.02) -> None: ...
    async def probe(self, timeout: float) -> str | None: ...
    def close(self) -> None: ...


class LeaseReleaser(Protocol):
    def release(self) -> None: ...


class WarningsView(Protocol):
    def values(self) -> list[str]: ...
    def __bool__(self) -> bool: ...


class HealthView(Protocol):
    @property
    def warnings(self) -> WarningsView: ...

    @property
    def public(self) -> PublicHealth: ...


class ActionsView(Protocol):
    @property
    def last_fence(self) -> FenceResult | None: ...


class Host(Protocol):
    """The daemon as its parts use it."""

    cfg: NodeConfig
    bus: EventBus
    sm: StateMachine
    peer: PeerView
    vip: VipPort
    early_probe: EarlyProbe
    resources: Resources
    replication: ReplicationGlue | None
    packets: Packets
    vip_held: bool
    escalated: str | None
    started: float
    state_since: float
    probe_why: str | None
    status_urls: list[str]
    loop_lag: LoopLagMonitor | None

    @property
    def lease(self) -> LeaseView: ...

    @property
    def lease_client(self) -> LeaseReleaser: ...

    @property
    def health(self) -> HealthView: ...

    @property
    def actions(self) -> ActionsView: ...

    @property
    def last_failover(self) -> Failover | None: ...

    def view(self, now: float) -> View: ...
    def peer_alive(self, now: float) -> bool: ...
    def evaluate(self, now: float | None = None) -> None: ...
    def drop_vip(self, reason: str) -> None: ...
    def begin_handover(self, cause: Cause) -> None: ...
