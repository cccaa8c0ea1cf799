"""The ARP probe's two timeouts (``ha/config.py``): the full one for handovers, cold starts and re-probes, and the
short one a failover with the witness lease held uses (``decide.short_probe``)."""

from __future__ import annotations

import pytest

from haoscar.ha.config import Timings
from haoscar.spec.models import HA


def timings(interval: float, dead: float, lease: float) -> Timings:
    return Timings.from_ha(HA(heartbeat_interval=interval, dead_time=dead, lease_s=lease))


@pytest.mark.parametrize(
    ("interval", "dead", "lease", "full_ms", "short_ms"),
    [
        (0.2, 0.6, 0.8, 25.0, 6.25),  # the default profile
        (0.1, 0.3, 0.3, 12.5, 3.125),  # the fast profile
        (0.05, 0.15, 0.15, 6.25, 2.0),  # never below 2 ms
        (1.0, 3.0, 3.0, 30.0, 30.0),  # never above the full probe
    ],
)
def test_the_failover_probe_is_shorter_but_never_below_two_ms_nor_above_the_full_one(
    interval: float, dead: float, lease: float, full_ms: float, short_ms: float
) -> None:
    t = timings(interval, dead, lease)
    assert t.probe_timeout * 1000 == pytest.approx(full_ms)
    assert t.failover_probe_timeout * 1000 == pytest.approx(short_ms)
    shown = t.as_dict()
    assert shown["failover_probe_timeout_s"] == t.failover_probe_timeout
    # the expected failover after a crash counts the probe a failover really runs
    assert shown["expected_failover_s"] == pytest.approx(max(dead, lease) + t.failover_probe_timeout + 0.05)
