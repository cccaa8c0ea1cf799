"""``haoscar bench failover`` once, for real: one crash of the primary with haoscar's default profile.

No timing is asserted (the machine is shared; speed is the bench's business): the JSON carries every key a script
reads, a positive failover time, and the VIP answered from the standby after the crash.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import down_lab
from haoscar.scenarios.bench.failover import BenchOptions, run_failover_bench
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

KEYS = (
    "haoscar_default_median_ms",
    "haoscar_fast_median_ms",
    "dhcp_default_median_ms",
    "idle_cpu_pct",
    "rss_mb",
    "runs_ms",
    "floors",
)


def test_one_crash_moves_the_vip_to_the_standby() -> None:
    spec = default_spec()
    name = unique_lab_name("bf")
    # A short state directory: the daemons' control sockets live under it, and a UNIX socket path has 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))
    try:
        result = run_failover_bench(spec, state, BenchOptions(runs=1, fast=False, idle_seconds=1.0, lab_name=name))
        assert not (state / "labs" / name).exists()
    finally:
        down_lab(name, state)  # the bench takes its lab down itself; this only guards against a bug in that
        shutil.rmtree(state, ignore_errors=True)
    for key in KEYS:
        assert key in result, f"missing {key}"
    assert "keepalived_default_median_ms" not in result  # only with --vs keepalived
    assert len(result["runs_ms"]["haoscar_default"]) == 1
    assert result["haoscar_default_median_ms"] > 0
    # from the primary's last heartbeat that reached the standby (sniffed there) to the first reply: the standby
    # waited its dead time (0.6 s) of silence after that heartbeat (less the sniffer's own lag on a busy machine)
    [since] = result["since_last_heard_ms"]["haoscar_default"]
    assert since >= 0.5 * 600
    assert result["dhcp_default_median_ms"] > 0
    assert result["vip_owner_after_crash"]["haoscar_default"] == [spec.heads.standby.hostname]
    assert result["idle_cpu_pct"] >= 0 and result["rss_mb"] > 0
    # the shipped default configuration ran (issue 15), and says so
    assert result["config"]["replication"] is True
    assert result["config"]["services"] == ["dhcp (dnsmasq)", "api (status-api)"]
