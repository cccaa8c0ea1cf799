"""The snapshot the decision tests start from (test_decide, test_cause, test_public_health): a standby head at
t = 100 s, in its state for 10 s, with the default timers, a witness and fencing; a test changes only what its case
is about."""

from __future__ import annotations

from dataclasses import replace

from haoscar.ha.decide import View
from haoscar.ha.state import State

BASE = View(
    now=100.0,
    state=State.STANDBY,
    state_since=90.0,
    started=90.0,
    is_primary=False,
    dead=0.6,
    startup_wait=0.6,
    handover_timeout=3.0,
    witness_configured=True,
    fencing_configured=True,
    failback_auto=False,
    failback_stable=10.0,
)


def view(**changes: object) -> View:
    return replace(BASE, **changes)  # type: ignore[arg-type]
