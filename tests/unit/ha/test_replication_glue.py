"""The HA daemon's replication glue with a fake manager, and the replication rules of ``decide``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.events import EventBus
from haoscar.ha.decide import Demote, Go, View, decide, stale_refusal, wants_failback
from haoscar.ha.replication_glue import ReplicationGlue
from haoscar.ha.state import State
from haoscar.replication.state import PersistedState, ReplicationStatus, may_take_over


@dataclass
class Report:
    peer: str
    divergent_dir: Path
    divergent_files: list[str] = field(default_factory=list)
    seconds: float = 0.1
    ready: bool = True
    error: str | None = None


class FakeManager:
    def __init__(self, persisted: PersistedState | None = None) -> None:
        self.persisted = persisted or PersistedState()
        self._role = "none"
        self.calls: list[str] = []
        self.catch_up_gate = asyncio.Event()
        self.drains = True
        self.fail_source: Exception | None = None
        self.pending = 0
        self.lag = 0.4

    @property
    def role(self) -> str:
        return self._role

    async def start_source(self, peer: str | None = None) -> None:
        self.calls.append(f"source:{peer}")
        if self.fail_source is not None:
            raise self.fail_source
        self._role = "source"

    async def start_target(self) -> None:
        self.calls.append("target")
        self._role = "target"

    async def stop(self) -> None:
        self.calls.append("stop")
        self._role = "none"

    async def catch_up_from(self, peer: str, timeout: float = 120.0) -> Report:
        self.calls.append(f"catch-up:{peer}")
        self.persisted.standby_stale, self.persisted.role = True, "none"
        await self.catch_up_gate.wait()
        self._role = "target"
        self.persisted.standby_stale = False
        return Report(peer, Path("/x/divergent/20250101T000000Z"), ["files/home/only"])

    async def drain(self, timeout: float) -> bool:
        self.calls.append("drain")
        return self.drains

    def drained_now(self) -> bool:
        return self.drains

    def status(self) -> ReplicationStatus:
        return ReplicationStatus(
            node="head1", role=self._role, peer="head2", lag_s=self.lag, files_pending=self.pending, bytes_pending=4096,
            last_full_pass=None, last_error=None, standby_stale=self.persisted.standby_stale,
            stale_reason=self.persisted.stale_reason, db_lsn=3, db_connected=True,
        )  # fmt: skip

    def may_take_over(self, force: bool = False) -> tuple[bool, str]:
        return may_take_over(self.persisted, force)


def glue_with(manager: FakeManager) -> tuple[ReplicationGlue, EventBus]:
    bus = EventBus("head1")
    return ReplicationGlue(manager, bus, "head1", "head2"), bus


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_the_direction_follows_the_role() -> None:
    async def main() -> None:
        manager = FakeManager()
        glue, _ = glue_with(manager)
        glue.role_changed(State.STANDBY)
        await settle()
        assert manager.role == "target" and glue.phase == "target"
        glue.role_changed(State.ACTIVE)
        await settle()
        assert manager.calls == ["target", "source:head2"] and glue.phase == "source"
        # A clean handover (drained after the services stopped) makes it a plain target again.
        await glue.final_drain()
        glue.role_changed(State.STANDBY)
        await settle()
        assert manager.role == "target" and glue.substate() is None
        await glue.close()

    asyncio.run(main())


def test_a_returning_source_waits_for_the_active_peer_then_catches_up_and_is_not_eligible_meanwhile() -> None:
    async def main() -> None:
        manager = FakeManager(PersistedState(role="source"))  # its last life ended as the active head
        glue, _ = glue_with(manager)
        glue.role_changed(State.STANDBY)
        await settle()
        # Nobody is active yet: nothing is pushed here and nothing pulled; not blocking a cold start.
        assert manager.role == "none" and "target" not in manager.calls
        assert glue.substate() == "waiting-to-catch-up" and not glue.catching_up
        glue.tick(peer_active=True)
        await settle()
        assert manager.calls[-1] == "catch-up:head2"
        assert glue.catching_up and glue.substate() == "catching-up" and glue.own_copy_stale
        assert glue.status()["phase"] == "catching-up"
        manager.catch_up_gate.set()
        await settle()
        assert not glue.catching_up and glue.phase == "target" and glue.substate() is None
        assert glue.status()["last_catch_up"]["divergent_files"] == 1
        await glue.close()

    asyncio.run(main())


def test_becoming_active_cancels_a_catch_up_and_an_unclean_demotion_catches_up_again() -> None:
    async def main() -> None:
        manager = FakeManager(PersistedState(role="source"))
        glue, _ = glue_with(manager)
        glue.role_changed(State.STANDBY)
        glue.tick(peer_active=True)
        await settle()
        assert glue.catching_up
        glue.role_changed(State.ACTIVE)  # e.g. forced, the peer died meanwhile
        await settle()
        assert manager.role == "source" and not glue.catching_up
        manager.drains = False
        await glue.final_drain()  # could not drain: the peer may lack this head's last changes
        glue.role_changed(State.STANDBY)
        await settle()
        assert glue.want == "catch-up" and manager.role == "none"
        await glue.close()

    asyncio.run(main())


def test_a_start_failure_is_a_critical_event_and_the_head_goes_on() -> None:
    async def main() -> None:
        manager = FakeManager()
        manager.fail_source = UserError("replicated path /home/nothere does not exist on head1")
        glue, bus = glue_with(manager)
        glue.role_changed(State.ACTIVE)
        await settle()
        failed = [e for e in bus.recent() if e.kind == "replication.failed"]
        assert failed and failed[0].severity == "critical" and "/home/nothere" in failed[0].message
        assert glue.phase == "failed" and "/home/nothere" in str(glue.status()["glue_error"])
        await glue.close()

    asyncio.run(main())


def test_a_switchover_that_cannot_drain_is_refused_with_the_reason() -> None:
    async def main() -> None:
        manager = FakeManager()
        glue, bus = glue_with(manager)
        glue.role_changed(State.ACTIVE)
        await settle()
        ok, why = await glue.drain_for_switchover(0.1)
        assert ok and "keeping up" in why
        manager.drains, manager.pending = False, 7
        ok, why = await glue.drain_for_switchover(0.1)
        assert ok, "a standby in sync with a lag below 1 s keeps up: the final drain ships the rest"
        manager.lag = 2.5
        ok, why = await glue.drain_for_switchover(0.1)
        assert not ok and "7 files" in why and "did not drain" in why and "stays here" in why
        assert any(e.kind == "replication.drain_failed" for e in bus.recent())
        await glue.close()

    asyncio.run(main())


def test_a_stale_standby_refuses_a_takeover_unless_forced_and_says_so_loudly() -> None:
    manager = FakeManager(PersistedState(standby_stale=True, stale_reason="disk full on head2", role="target"))
    manager._role = "target"
    glue, bus = glue_with(manager)
    assert glue.own_copy_stale and glue.substate() == "stale"
    refused = glue.request_takeover(force=False)
    assert refused is not None and not refused["ok"] and "--force" in refused["error"]
    assert not glue.forced
    forced = glue.request_takeover(force=True)
    assert forced is not None and forced["ok"] and "FORCED" in forced["message"] and glue.forced
    assert [e.severity for e in bus.recent() if e.kind == "ha.forced_takeover"] == ["critical"]
    # A current copy: replication has nothing to say, the daemon answers as usual.
    assert glue_with(FakeManager())[0].request_takeover(force=False) is None
    # The flag persisted by a former *source* is about its standby, not about its own copy.
    assert not glue_with(FakeManager(PersistedState(standby_stale=True, role="source")))[0].own_copy_stale


def view(**changes: Any) -> View:
    base = View(
        now=100.0, state=State.STANDBY, state_since=0.0, started=0.0, is_primary=False, dead=0.6,
        startup_wait=1.0, handover_timeout=2.0, witness_configured=True, fencing_configured=False,
        failback_auto=True, failback_stable=5.0, lease_until=101.0,
    )  # fmt: skip
    return replace(base, **changes)


def test_decide_a_stale_standby_stays_standby_when_the_peer_dies_unless_forced() -> None:
    silent = view(peer_last_heard=90.0, peer_state=State.ACTIVE)
    assert decide(silent) == [Go(State.TAKEOVER, "the peer is silent on every network")]
    assert decide(replace(silent, repl_stale=True)) == []
    assert stale_refusal(replace(silent, repl_stale=True))
    assert not stale_refusal(replace(silent, repl_stale=True, repl_forced=True))
    assert decide(replace(silent, repl_stale=True, repl_forced=True)) == [
        Go(State.TAKEOVER, "the peer is silent on every network")
    ]
    # Not while the peer is alive (nothing to refuse), nor before the start-up wait.
    assert not stale_refusal(replace(silent, repl_stale=True, peer_last_heard=99.9))
    assert not stale_refusal(replace(silent, repl_stale=True, started=99.5))


def test_decide_a_catching_up_head_is_not_eligible_and_failback_waits_for_replication() -> None:
    cold = view(is_primary=True, peer_last_heard=99.9, peer_state=State.STANDBY, peer_healthy=True)
    assert decide(cold) != []
    assert decide(replace(cold, repl_catching_up=True)) == []
    primary = view(
        is_primary=True, peer_last_heard=99.9, peer_state=State.ACTIVE, peer_all_links=True, stable_since=90.0
    )
    assert wants_failback(primary)
    assert not wants_failback(replace(primary, repl_catching_up=True))
    assert not wants_failback(replace(primary, repl_stale=True))
    active = view(state=State.ACTIVE, peer_last_heard=99.9, peer_state=State.STANDBY, peer_healthy=True,
                  peer_wants_failback=True)  # fmt: skip
    assert decide(active) == [Demote("failback to the primary", urgent=False, handover=True)]
    assert decide(replace(active, repl_drained=False)) == []
