"""What every head-node service is: start, stop, check; and what it may use to do so."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haoscar.events import EventBus
from haoscar.ha.services.proc import within
from haoscar.spec.models import HA, ClusterSpec, HeadNode, Service

if TYPE_CHECKING:
    from haoscar.ha.api import ApiProvider


class ResourceError(Exception):
    """A service could not be started (or checked); ``service`` names it."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"service {service}: {message}")
        self.service = service
        self.reason = message


@dataclass
class ServiceEnv:
    """The node a service runs on and the doors it may use."""

    node: str
    state_dir: Path
    bus: EventBus
    spec: ClusterSpec | None = None
    api_provider: ApiProvider | None = None
    ha_config: HA | None = None  # for a node without a full spec (tests, tools); the spec's ha: otherwise

    @property
    def ha(self) -> HA:
        if self.spec is not None:
            return self.spec.ha
        return self.ha_config or HA()

    @property
    def head(self) -> HeadNode | None:
        if self.spec is None:
            return None
        heads = (self.spec.heads.primary, self.spec.heads.standby)
        return next((head for head in heads if head.hostname == self.node), None)

    def service_dir(self, name: str) -> Path:
        return self.state_dir / "ha" / "services" / name


class ProbePacer:
    """When a service's end-to-end probe (a request made the way a client makes it: an HTTPS ``GET``, ``scontrol
    ping``) is due. The cheap part of a check (is the process there) runs at every ``interval``; the probe runs at
    most every ``probe_interval`` once it has passed for the process it probes, and at every check otherwise: until
    a new process first answers (a start's ``wait_ready``), and after any failed probe (a restart is decided on
    probes, never on a skipped one). Why: an HTTPS handshake each second was the largest part of an idle active
    head's CPU (docs/benchmarks.md, idle cost); keepalived's HTTP checker waits 60 s between two by default."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._passed: tuple[object, float] | None = None  # (the process probed, when it last answered)

    def due(self, process: object) -> bool:
        if self._passed is None or self._passed[0] is not process:
            return True
        return self.clock() - self._passed[1] >= self.every

    def record(self, process: object, problem: str | None) -> str | None:
        """Remember a probe's result for ``process``; returns ``problem`` unchanged."""
        self._passed = (process, self.clock()) if problem is None else None
        return problem


class ServiceResource(ABC):
    """One entry of ``ha.services``. ``start`` raises ``ResourceError``; ``stop`` returns False when the service
    would not stop (the node must then be fenced); ``check`` returns None when healthy, else what is wrong."""

    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        self.spec = spec
        self.env = env
        self.name = spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> bool: ...

    @abstractmethod
    async def check(self) -> str | None: ...

    def pid(self) -> int | None:
        return None

    def fail(self, message: str) -> ResourceError:
        return ResourceError(self.name, message)

    async def wait_ready(self, proc: asyncio.subprocess.Process | None = None, may_exit: bool = False) -> None:
        """Poll ``check`` until it passes within the service's timeout; a started process that exits first (or,
        with ``may_exit``, fails) is a failed start, reported at once rather than after the timeout."""
        deadline = time.monotonic() + self.spec.timeout
        problem: str | None = "not checked"
        while True:
            if proc is not None and proc.returncode is not None and (proc.returncode != 0 or not may_exit):
                raise self.fail(f"exited with status {proc.returncode} while starting (log: {self.log_path})")
            remaining = deadline - time.monotonic()
            try:
                problem = await within(self.check(), max(0.05, remaining))
            except TimeoutError:
                # A check cut short by the deadline says nothing new: keep what the last finished check found.
                if problem == "not checked":
                    problem = f"check took longer than {self.spec.timeout:g} s"
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise self.fail(f"not ready after {self.spec.timeout:g} s: {problem}")
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    @property
    def log_path(self) -> Path:
        return self.env.service_dir(self.name) / "output.log"
