"""A cold start where the primary's daemon starts late (a slow start on a loaded host), in a lab whose state
directory is longer than a UNIX socket path may be: the standby waits its initial dead time (``ha.initdead_s``),
hears the primary, defers to it, and never goes for the role; the daemons' control sockets answer all along."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from haoscar.scenarios.ha_lab import ha_lab
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
