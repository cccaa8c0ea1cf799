"""`haoscar demo` (`make demo`)'s console act: while the lab runs it prints the web console's URL, an admin's name
and password and the browser command, and the client host gets the login page over TLS (the cluster CA) and is sent
to the login from the dashboard; the lab is taken down after."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.lab import known_labs
from haoscar.lab.defaults import default_spec
from haoscar.lab.names import NETNS_DIR, netns_prefix
from haoscar.scenarios.demo import CONSOLE, REACHABILITY, Act, console_act, reachability, run_demo
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = pytest.mark.lab


def test_make_demo_prints_the_consoles_url_and_credentials(tmp_path: Path) -> None:
    name = unique_lab_name("dc")
    screen = Console(record=True, width=400)
    report = run_demo(default_spec(), tmp_path, name, acts=[Act(REACHABILITY, reachability), console_act(screen)])
    assert report.ok, report.to_dict()
    act = report.acts[1]
    assert act.title == CONSOLE
    assert [c.observed for c in act.checks] == [True, True], act.checks
    printed = screen.export_text()
    assert re.search(r"console https://198\.19\.0\.10:8443\b", printed), printed
    assert re.search(r"admin admin\b", printed), printed
    password = re.search(r"password (\S+)", printed)
    assert password and len(password.group(1)) >= 12, printed
    assert f"nsenter --net={NETNS_DIR}/{netns_prefix(name)}client /usr/bin/chromium" in printed, printed
    assert "--ignore-certificate-errors-spki-list=" in printed, printed
    left = [n for n in os.listdir(NETNS_DIR) if n.startswith(netns_prefix(name))] if os.path.isdir(NETNS_DIR) else []
    assert left == [] and known_labs(tmp_path) == []
