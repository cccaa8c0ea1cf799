"""The failover's ARP probe, made in the last milliseconds of the peer's dead time instead of after it.

A failover proper (peer silent on every network for the dead time, witness lease granted: ``decide.short_probe``)
probes the alias with ARP before announcing it, looking for a kernel that still answers for it while its daemon
cannot act (killed, frozen). Made after the lease grant, that probe added its window (3.1 ms at 0.1 s heartbeats)
and its socket's set-up to every failover (docs/benchmarks.md, breakdown). Here the standby sends it
``timeout + LEAD_S`` before the dead time ends, while the peer is still silent, so that its answer is in when the
peer is declared dead and the lease is granted. Only where the lease frees when the dead time ends (``lease_s <=
dead_time``, the ``fast`` profile); with a longer lease the grant comes later and the takeover probes after it.

Why the answer is still good then (docs/ha-safety.md, "The failover's probe is sent in the last milliseconds of the
dead time"): the alias can be on the peer only (a) in a kernel that already held it when the request was sent, which
answers ARP at once and so answered this probe, or (b) added by the peer's daemon later, which it does only while
its own view of its lease is valid (that view ends at least ``margin`` before the lease ends at the witness, and the
witness grants this head the lease only after that) or its peer guard holds (it ends ``margin`` before this head can
declare it dead): so such an add happened at least ``margin`` before the grant.
The result is used only when the request was sent less than ``margin`` before it is used (which is after the grant),
so no add can fall after the send; and only when nobody answered and the peer has stayed silent since. In every
other case the takeover probes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from haoscar.ha.config import Timings
from haoscar.ha.lease_client import ASK_AHEAD_S

# Sent this long before the probe's window must end (the dead time's end): the socket's set-up, a loop timer that
# runs up to 1 ms late (twice: the start and the window's end) and the dead time's precise timer, which holds the
# loop for its last 1.5 ms (precise_timer.py), fit in it, so the answer is in when the peer is declared dead. A
# heartbeat that arrives this late is rare enough that the wasted ARP request (one frame) costs nothing.
LEAD_S = 0.005


class Prober(Protocol):
    async def probe(self, timeout: float) -> str | None: ...


@dataclass
class _Probe:
    heard: float  # the peer's last heartbeat when this probe was sent: the silence it belongs to
    task: asyncio.Task[str | None]
    sent: float  # when it was started (its request leaves right after): what its freshness counts from
    ended: float | None = None  # when the window closed (the task ended)


class EarlyProbe:
    """Starts the probe at the right moment of a silence and says whether its result may stand in for one."""

    def __init__(self, vip: Callable[[], Prober], timings: Timings, ask: Callable[[float], None] | None = None) -> None:
        self._vip = vip  # the daemon's VIP set, read when probing (tests replace it)
        # Asks the witness for the lease ``ASK_AHEAD_S`` before the dead time ends (``LeaseClient.ask_ahead``): the
        # witness holds a request that early and grants it the moment the peer's lease ends, which is then too.
        self._ask = ask
        self._asked: float | None = None  # the silence (the peer's last heartbeat) the lease was asked ahead for
        self._ask_timer: tuple[float, asyncio.TimerHandle] | None = None  # (silence, timer) of an ask to come
        self.timeout = timings.failover_probe_timeout
        self.dead = timings.dead
        # With a lease longer than the dead time (the default profile: 0.8 s against 0.6 s) the grant comes
        # lease - dead after the dead time, so a probe from before the dead time's end would be too old to use.
        self.useful = timings.lease <= timings.dead
        self._current: _Probe | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, now: float, heard: float | None, wanted: bool) -> None:
        """Called at every evaluation: ``heard`` is the peer's last heartbeat (None unless this head is standby),
        ``wanted`` whether a failover of this head could use the probe (a witness). Starts or schedules it."""
        self._cancel_timer()
        if self._ask_timer is not None and (self._ask_timer[0] != heard or not wanted):
            self._ask_timer[1].cancel()  # that silence ended (a heartbeat came) or this head no longer stands by
            self._ask_timer = None
        if not (wanted and self.useful) or heard is None:
            return
        if self._current is not None and self._current.heard == heard:
            return  # made (or being made) for this silence already
        start_at = heard + self.dead - self.timeout - LEAD_S
        if now >= heard + self.dead:
            return  # too late to be early: the takeover probes itself
        if now >= start_at:
            self._start(heard)
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + (start_at - now), self._start, heard)

    async def outcome(self, heard: float | None, margin: float) -> tuple[bool, float | None]:
        """``usable``, after waiting for this silence's probe if it is still listening (a loop that ran a little
        late): its window is as good as a new probe's, and ends sooner."""
        probe = self._current
        if probe is not None and heard is not None and probe.heard == heard and not probe.task.done():
            await asyncio.wait({probe.task}, timeout=self.timeout + 0.05)
        return self.usable(heard, margin)

    def usable(self, heard: float | None, margin: float) -> tuple[bool, float | None]:
        """Whether the takeover may skip its own probe: (True, when the early probe's window closed). ``margin``:
        the lease's (``Timings.margin``), the most that may lie between the request's send and this use."""
        probe = self._current
        if probe is None or heard is None or probe.heard != heard or probe.ended is None:
            return False, None
        if not probe.task.done() or probe.task.cancelled() or probe.task.exception() is not None:
            return False, None
        fresh = time.monotonic() - probe.sent < margin
        return (fresh and probe.task.result() is None), probe.ended

    def asked_for(self, heard: float | None) -> bool:
        """Whether the lease was asked ahead for this silence: a grant that comes a little before the dead time ends
        is kept for the takeover rather than released as unwanted (a heartbeat since ends the silence)."""
        return heard is not None and self._asked == heard

    def _start(self, heard: float) -> None:
        self._timer = None
        if self._current is not None and not self._current.task.done():
            self._current.task.cancel()
        sent = time.monotonic()
        if self._ask is not None:
            delay = max(0.0, heard + self.dead - ASK_AHEAD_S - sent)
            self._ask_timer = (heard, asyncio.get_running_loop().call_later(delay, self._ask_now, heard))
        task = asyncio.ensure_future(self._vip().probe(self.timeout))
        probe = _Probe(heard, task, sent)
        self._current = probe

        def ended(done: asyncio.Task[str | None]) -> None:
            probe.ended = time.monotonic()
            if not done.cancelled():
                with contextlib.suppress(Exception):
                    done.exception()  # retrieved: an interface that went away is the takeover's own probe's business

        task.add_done_callback(ended)

    def _ask_now(self, heard: float) -> None:
        self._ask_timer = None
        if self._ask is not None:
            self._asked = heard
            self._ask(time.monotonic())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
