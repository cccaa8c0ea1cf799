"""Head-node data replication on its own (the HA daemon drives the same manager): run it in one role, read its
status, ask whether this head's data allows it to take over."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.errors import FieldError, UserError

__all__ = ["ROLES", "ReplicationStatus", "RunReplication", "TakeOverCheck", "TakeOverVerdict", "may_take_over", "run",
           "status"]  # fmt: skip

ROLES = ("source", "target")


@dataclass(frozen=True)
class RunReplication:
    node: str
    """This head: its host name, or primary / standby."""
    spec_file: Path
    role: str
    """source (the active head) or target (the standby)."""
    catch_up: bool = False
    """As target: first pull from the peer, keeping divergent files."""
    key_file: Path | None = None


@dataclass(frozen=True)
class ReplicationStatus:
    data: dict[str, Any]
    """The status the replication process last wrote (``replication.state.ReplicationStatus`` fields)."""
    age_s: float
    """Seconds since it was written."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.data, "status_age_s": self.age_s}


@dataclass(frozen=True)
class TakeOverCheck:
    force: bool = False
    """Allow it although this head's data is stale."""


@dataclass(frozen=True)
class TakeOverVerdict:
    allowed: bool
    why: str

    @property
    def forced(self) -> bool:
        return self.why.startswith("FORCED")


def run(env: Env, request: RunReplication) -> int:
    """Run replication in the foreground in one role until SIGTERM; the process's exit status."""
    from haoscar.ha.alerts import daemon_bus
    from haoscar.replication.daemon import run_replication
    from haoscar.spec.loader import load_spec

    if request.role not in ROLES:
        raise FieldError(
            "role",
            f"{request.role!r} is not a role; use source (the active head) or target (the standby)",
            sep=": ",
            bare=True,
        )
    if request.catch_up and request.role != "target":
        raise FieldError(
            "catch_up",
            "catching up is for a returning head, which runs as target; drop it or use target",
            sep=": ",
            bare=True,
        )
    spec = load_spec(request.spec_file)
    return asyncio.run(
        run_replication(
            spec,
            request.node,
            env.state_dir,
            request.role,
            key_file=request.key_file,
            catch_up=request.catch_up,
            # The spec's alerts ride on the bus; replication sits below ha and gets the factory injected.
            make_bus=daemon_bus,
        )
    )


def status(env: Env) -> ReplicationStatus:
    """What the replication process on this head last reported."""
    from haoscar.replication.state import read_status

    current = read_status(env.state_dir / "replication")
    if current is None:
        raise UserError(
            f"no replication status under {env.state_dir}/replication; is `haoscar repl run` (or the HA daemon) "
            "running on this head, with this --state-dir?"
        )
    return ReplicationStatus(current.to_dict(), round(env.clock.wall() - current.updated, 2))


def may_take_over(env: Env, request: TakeOverCheck) -> TakeOverVerdict:
    """Whether this head's replicated data allows it to become active, and why."""
    from haoscar.replication.state import PersistedState
    from haoscar.replication.state import may_take_over as verdict

    allowed, why = verdict(PersistedState.load(env.state_dir / "replication"), request.force)
    return TakeOverVerdict(allowed, why)
