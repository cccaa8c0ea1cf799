"""The takeover's ARP probe (``LongActions._clear_the_way``): the short failover timeout only when ``decide`` said
so (the peer declared dead, the witness lease held), the full one otherwise and for every re-probe; an answer is
acted on whatever the timeout."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from haoscar.ha.actions import LongActions
from haoscar.ha.cause import Cause
from haoscar.ha.config import Timings
from haoscar.ha.decide import Promote
from haoscar.ha.early_probe import EarlyProbe
from haoscar.ha.state import State
from haoscar.spec.models import HA

TIMINGS = Timings.from_ha(HA(heartbeat_interval=0.1, dead_time=0.3, lease_s=0.3))
HOLDER = "52:54:00:00:00:01"


class _Vip:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers
        self.timeouts: list[float] = []

    async def probe(self, timeout: float) -> str | None:
        self.timeouts.append(timeout)
        return self.answers.pop(0) if self.answers else None


class _Cfg:
    def __init__(self, witness: bool) -> None:
        self.timings = TIMINGS
        self.witness = ("198.18.0.250",) if witness else ()
        self.vip = "198.19.0.10"


class _Peer:
    state = State.ACTIVE

    def newest(self) -> float:
        return 1.0


class _Bus:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def event(self, kind: str, *_args: Any, **_data: Any) -> None:
        self.kinds.append(kind)


class _Daemon:
    def __init__(self, answers: list[str | None], witness: bool = True) -> None:
        self.vip = _Vip(answers)
        self.cfg = _Cfg(witness)
        self.peer = _Peer()
        self.bus = _Bus()
        self.early_probe = EarlyProbe(lambda: self.vip, TIMINGS)  # none made


def clear(answers: list[str | None], short: bool, fence: bool = True) -> tuple[_Daemon, list[str]]:
    daemon = _Daemon(answers)
    actions = LongActions(daemon)  # type: ignore[arg-type]
    fenced: list[str] = []

    async def fake_fence() -> None:
        fenced.append("peer")

    actions._fence = fake_fence  # type: ignore[method-assign]
    promote = Promote("holds the witness lease", fence, False, Cause.FAILOVER, short_probe=short)
    asyncio.run(actions._clear_the_way(promote))
    assert "probe_done" in actions.timeline
    return daemon, fenced


def test_the_short_timeout_only_when_decide_allowed_it() -> None:
    short, _ = clear([None], short=True)
    assert short.vip.timeouts == [TIMINGS.failover_probe_timeout]
    full, _ = clear([None], short=False)
    assert full.vip.timeouts == [TIMINGS.probe_timeout]
    assert TIMINGS.failover_probe_timeout < TIMINGS.probe_timeout


def test_an_answer_to_the_short_probe_still_fences_the_old_owner() -> None:
    daemon, fenced = clear([HOLDER], short=True)
    assert fenced == ["peer"] and "vip.conflict" in daemon.bus.kinds


def test_without_fencing_every_re_probe_waits_the_full_timeout() -> None:
    daemon, fenced = clear([HOLDER, HOLDER, None], short=True, fence=False)
    # the first probe was the short one; waiting for the old owner's lifetime to end re-probes at full length
    assert daemon.vip.timeouts == [TIMINGS.failover_probe_timeout, TIMINGS.probe_timeout, TIMINGS.probe_timeout]
    assert fenced == []


def test_an_old_owner_that_keeps_answering_is_never_overridden() -> None:
    daemon = _Daemon([HOLDER] * 1000)
    actions = LongActions(daemon)  # type: ignore[arg-type]
    # the wait for the old owner's lifetime to end: 1 s here instead of 2 (a lifetime of 0 + 1 s of slack)
    daemon.cfg.timings = replace(TIMINGS, vip_lifetime=0)
    with pytest.raises(RuntimeError, match="still answers"):
        asyncio.run(actions._clear_the_way(Promote("x", False, False, Cause.FAILOVER, short_probe=True)))
