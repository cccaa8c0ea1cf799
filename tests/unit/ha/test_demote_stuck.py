"""A demotion whose services will not stop never hands the role over: the head goes FAILED and is fenced."""

from __future__ import annotations

import asyncio
from typing import Any

from haoscar.ha.actions import LongActions
from haoscar.ha.cause import Cause
from haoscar.ha.decide import Demote


class _Resources:
    def __init__(self, stops: bool) -> None:
        self.stops = stops

    async def stop_monitoring(self) -> None:
        return None

    async def stop(self) -> bool:
        return self.stops


class _Replication:
    async def final_drain(self) -> None:
        return None


class _Lease:
    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


class _Daemon:
    def __init__(self, stops: bool) -> None:
        self.resources = _Resources(stops)
        self.replication = _Replication()
        self.lease_client = _Lease()
        self.escalated: Any = "x"
        self.vip_dropped: list[str] = []
        self.handovers: list[Cause] = []
        self.evaluations = 0

    def drop_vip(self, reason: str) -> None:
        self.vip_dropped.append(reason)

    def begin_handover(self, cause: Cause) -> None:
        self.handovers.append(cause)

    def evaluate(self) -> None:
        self.evaluations += 1


def _demote(stops: bool) -> tuple[_Daemon, LongActions]:
    daemon = _Daemon(stops)
    actions = LongActions(daemon)  # type: ignore[arg-type]
    action = Demote("switchover asked", urgent=False, handover=True, cause=Cause.SWITCHOVER)
    asyncio.run(actions._demote(action))
    return daemon, actions


def test_a_clean_stop_is_handed_over() -> None:
    daemon, actions = _demote(stops=True)
    assert daemon.handovers == [Cause.SWITCHOVER]
    assert actions.demote_result == "ok"
    assert daemon.vip_dropped and daemon.evaluations == 1


def test_a_service_that_will_not_stop_is_not_handed_over() -> None:
    daemon, actions = _demote(stops=False)
    assert daemon.handovers == []
    assert actions.demote_result == "a service would not stop"
    assert daemon.vip_dropped  # the VIP still goes: the kernel must not answer for it any more
