"""The failover's ARP probe made in the last milliseconds of the dead time (``ha/early_probe.py``): when it is
sent, and when a takeover may use its answer instead of probing again (``LongActions._clear_the_way``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from haoscar.ha.actions import LongActions
from haoscar.ha.cause import Cause
from haoscar.ha.config import Timings
from haoscar.ha.decide import Promote
from haoscar.ha.early_probe import LEAD_S, EarlyProbe
from haoscar.ha.state import State
from haoscar.spec.models import HA

TIMINGS = Timings.from_ha(HA(heartbeat_interval=0.1, dead_time=0.3, lease_s=0.3))
HOLDER = "52:54:00:00:00:01"


class Vip:
    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.sent: list[float] = []  # monotonic times of the probes' sends

    async def probe(self, timeout: float) -> str | None:
        self.sent.append(time.monotonic())
        await asyncio.sleep(timeout)
        return self.answer


def early(vip: Vip, dead: float = 0.2) -> EarlyProbe:
    return EarlyProbe(lambda: vip, replace(TIMINGS, dead=dead, lease=dead))


def test_sent_just_before_the_dead_time_ends_while_the_peer_is_silent() -> None:
    vip = Vip()

    async def scenario() -> tuple[float, bool, float | None]:
        probe, heard = early(vip), time.monotonic()
        probe.watch(time.monotonic(), heard, wanted=True)
        await asyncio.sleep(0.2 + 0.02)  # past the dead time: the probe was sent and has ended
        usable, ended = probe.usable(heard, margin=5.0)
        return heard, usable, ended

    heard, usable, ended = asyncio.run(scenario())
    assert len(vip.sent) == 1
    assert vip.sent[0] >= heard + 0.2 - TIMINGS.failover_probe_timeout - LEAD_S  # not before its moment
    assert usable and ended is not None and ended >= vip.sent[0] + TIMINGS.failover_probe_timeout


def test_a_heartbeat_before_the_moment_moves_it_and_none_is_sent_for_the_old_silence() -> None:
    vip = Vip()

    async def scenario() -> None:
        probe, now = early(vip, dead=1.0), time.monotonic()
        probe.watch(now, now - 1.0 + 0.05, wanted=True)  # this silence's moment is ~46 ms away
        probe.watch(time.monotonic(), now, wanted=True)  # heard again: the next moment is ~1 s away
        await asyncio.sleep(0.15)
        probe.watch(time.monotonic(), None, wanted=True)  # no longer standby: the timer is cancelled

    asyncio.run(scenario())
    assert vip.sent == []


def test_not_made_without_a_witness_or_for_an_active_head() -> None:
    vip = Vip()

    async def scenario() -> None:
        probe, heard = early(vip), time.monotonic()
        probe.watch(heard, heard, wanted=False)
        await asyncio.sleep(0.25)
        probe.watch(time.monotonic(), None, wanted=True)  # not a standby: nothing to time
        await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert vip.sent == []


def test_not_made_where_the_lease_outlasts_the_dead_time() -> None:
    """The default profile (lease 0.8 s, dead time 0.6 s): the grant comes 0.2 s after the dead time, too late for a
    probe from before it."""
    vip = Vip()
    default = Timings.from_ha(HA())

    async def scenario() -> None:
        probe, now = EarlyProbe(lambda: vip, default), time.monotonic()
        probe.watch(now, now - default.dead + 0.01, wanted=True)
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert default.lease > default.dead and vip.sent == []


def test_an_answer_a_new_heartbeat_or_an_old_result_is_not_used() -> None:
    async def made(answer: str | None) -> tuple[EarlyProbe, float]:
        probe, heard = early(Vip(answer), dead=0.05), time.monotonic()
        probe.watch(heard, heard, wanted=True)
        await asyncio.sleep(0.07)  # the probe's window (sent ~46 ms after heard, 3.1 ms long) is over
        return probe, heard

    async def scenario() -> list[bool]:
        answered, heard = await made(HOLDER)
        quiet, quiet_heard = await made(None)
        results = [
            answered.usable(heard, margin=5.0)[0],  # someone answered: the takeover probes itself
            quiet.usable(quiet_heard + 0.01, margin=5.0)[0],  # the peer was heard after the probe was sent
            quiet.usable(quiet_heard, margin=5.0)[0],  # good
        ]
        await asyncio.sleep(0.06)
        results.append(quiet.usable(quiet_heard, margin=0.05)[0])  # ended more than the margin ago
        return results

    assert asyncio.run(scenario()) == [False, False, True, False]


class _Cfg:
    timings = replace(TIMINGS, margin=5.0)  # freshness is the test above's; a loaded machine's late loop is not
    witness = ("198.18.0.250",)
    vip = "198.19.0.10"


class _Peer:
    state = State.ACTIVE

    def __init__(self, heard: float) -> None:
        self.heard = heard

    def newest(self) -> float:
        return self.heard


class _Bus:
    def event(self, *_args: Any, **_data: Any) -> None:
        return None


class _Daemon:
    def __init__(self, heard: float) -> None:
        self.vip = Vip()
        self.cfg = _Cfg()
        self.peer = _Peer(heard)
        self.bus = _Bus()
        self.early_probe = EarlyProbe(lambda: self.vip, TIMINGS)
        self.took_over_at = 0.0


def test_a_failover_uses_a_good_early_probe_and_says_when_it_ended() -> None:
    async def scenario(short: bool) -> tuple[_Daemon, LongActions]:
        heard = time.monotonic() - TIMINGS.dead + 0.01  # the early probe's moment is now
        daemon = _Daemon(heard)
        daemon.early_probe.watch(time.monotonic(), heard, wanted=True)
        await asyncio.sleep(0.02)
        actions = LongActions(daemon)  # type: ignore[arg-type]
        daemon.took_over_at = time.monotonic()
        await actions._clear_the_way(Promote("holds the witness lease", True, False, Cause.FAILOVER, short_probe=short))
        return daemon, actions

    daemon, actions = asyncio.run(scenario(short=True))
    assert len(daemon.vip.sent) == 1  # the early one only
    assert actions.timeline["probe_done"] < daemon.took_over_at  # the early probe's end, before the takeover
    daemon, actions = asyncio.run(scenario(short=False))  # a handover or a cold start: its own full probe
    assert len(daemon.vip.sent) == 2
