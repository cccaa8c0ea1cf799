"""A cold start where the primary's daemon starts late (a slow start on a loaded host), in a lab whose state
directory is longer than a UNIX socket path may be: the standby waits its initial dead time (``ha.initdead_s``),
hears the primary, defers to it, and never goes for the role; the daemons' control sockets answer all along.

With replication: the primary is active before the standby's replication listens (its first sync finds nobody);
once the standby reports its copy current, a crash of the primary is taken over at once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
PRIMARY_DELAY_S = 3.0  # shorter than initdead (10 s by default), far longer than the standby's old 2 s wait


def test_a_late_primary_wins_the_cold_start_under_a_long_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("cold") / ("a-state-directory-longer-than-a-socket-path-" * 2)
    where.mkdir()
    with ha_lab(load_spec(LAB_YAML), unique_lab_name("hc"), where, heads=("standby",), wait=False) as ha:
        started = time.monotonic()
        socket_file = ha.lab.host_dir(ha.standby) / "var/lib/haoscar/ha/control.sock"
        assert len(str(socket_file)) > 108
        seen: set[str] = set()
        while time.monotonic() - started < PRIMARY_DELAY_S:  # alone, the standby stays standby
            status = ha.status(ha.standby, timeout=1.0)
            if status is not None:
                seen.add(status["state"])
            time.sleep(0.1)
        assert seen == {"standby"}, seen  # the status answered through the long path, and never another state
        ha.start_daemon(ha.primary)
        active = ha.wait_for(ha.primary, "active", 15)
        assert active["lease"]["holder"] == ha.primary
        ha.wait_for(ha.standby, "standby", 5)
        assert pings(ha.lab, "client", ha.vip)
        events = ha.lab.host_dir(ha.standby) / "var/lib/haoscar/ha/events.jsonl"
        roles = [json.loads(line) for line in events.read_text().splitlines() if '"role"' in line]
        assert [e["data"]["new"] for e in roles if e["kind"] == "role"] == ["standby"], roles
        standby = ha.status(ha.standby)
        assert standby is not None and standby["timings"]["initdead_s"] == 10.0 and not standby["vip"]["held"]


def _events(ha: HaLab, head: str) -> list[dict[str, object]]:
    path = ha.lab.host_dir(head) / "var/lib/haoscar/ha/events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_crash_right_after_the_standby_reports_its_copy_current_is_taken_over(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("coldrepl")
    start = {"heads": ("primary",), "wait": False, "replication": True, "replication_ack_timeout_s": 1.0}
    with ha_lab(load_spec(LAB_YAML), unique_lab_name("hc"), where, **start) as ha:
        # The primary alone takes the role and starts replicating to a standby whose daemon is not running yet.
        ha.wait_for(ha.primary, "active", 20)
        ha.start_daemon(ha.standby)
        ha.wait_for(ha.standby, "standby", 20)

        def current() -> bool:
            return bool(((ha.status(ha.standby, timeout=1.0) or {}).get("replication") or {}).get("confirmed_current"))

        assert wait_until(current, 60, 0.02), f"{ha.logs(ha.primary)}\n{ha.logs(ha.standby)}"
        ha.lab.crash(ha.primary)
        took_over = ha.wait_for(ha.standby, "active", 15)
        assert took_over["vip"]["held"] and took_over["lease"]["holder"] == ha.standby
        assert pings(ha.lab, "client", ha.vip)
        kinds = [e["kind"] for e in _events(ha, ha.standby)]
        assert "replication.refused" not in kinds and "ha.forced_takeover" not in kinds, kinds
        # The first syncs that found no listener were retried quietly: no failure was reported for them.
        failed = [e for e in _events(ha, ha.primary) if e["kind"] == "replication.failed"]
        assert failed == [], failed
