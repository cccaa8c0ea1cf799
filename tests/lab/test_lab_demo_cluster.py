"""`haoscar demo --install`'s function (the acts `make demo` runs, then the install act): reachability across the
networks and the alias moving to the standby after a crash; Slurm jobs through a crash of the active head, the queue
shown from the new head through the private alias, the crashed head restored; then a third HA session on the same
lab, after two crashes, whose active head crashes with a never-installed node's MAC just assigned: the node (a VM)
network-boots and installs from the new head (its replicated database and image store, the installer on the private
alias), boots from its disk and answers the new head (issue 11, "Must show"); the lab torn down, nothing left. The
cluster act runs after the failover act, as in `make demo`: a second HA session on a lab whose first one moved the
role and back."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.lab import known_labs
from haoscar.lab.defaults import default_spec
from haoscar.lab.names import NETNS_DIR, netns_prefix
from haoscar.scenarios.demo import default_acts, run_demo
from haoscar.scenarios.demo_cluster import PRIVATE_ALIAS
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(600)]

INSTALLER_CACHE = Path("/var/tmp/haoscar-test-cache/installer")  # shared with the other install tests


def _leftovers(name: str) -> list[str]:
    return [n for n in os.listdir(NETNS_DIR) if n.startswith(netns_prefix(name))] if os.path.isdir(NETNS_DIR) else []


def test_demo_reaches_keeps_jobs_through_a_crash_and_installs_a_node_from_the_new_head(tmp_path: Path) -> None:
    screen = io.StringIO()
    name = unique_lab_name("dc")
    seen: list[str] = []
    console = Console(file=screen, width=120)
    state = tmp_path / "state"
    (state / "cache").mkdir(parents=True)
    INSTALLER_CACHE.mkdir(parents=True, exist_ok=True)
    (state / "cache" / "installer").symlink_to(INSTALLER_CACHE)
    acts = default_acts(console, state, slurm=True)  # `haoscar demo --install`
    report = run_demo(default_spec(), tmp_path, name, acts=acts, observe=lambda kind, _: seen.append(kind))
    shown = screen.getvalue()
    failed = [(a.title, c) for a in report.acts for c in a.checks if not c.ok]
    assert report.ok, (failed, shown[-3000:])
    assert [a.title for a in report.acts] == [a.title for a in acts] and len(acts) == 4
    # Reachability: the head reaches a node on the private network; the client reaches the head's public address
    # only, never the private network.
    reach = {(c.source, c.target, c.address): c.observed for c in report.acts[0].checks}
    assert reach[("head1", "node01", "198.18.0.101")] is True
    assert reach[("client", "head1", "198.19.0.11")] is True
    assert reach[("client", "head1", "198.18.0.1")] is False
    failover = {c.what: c for c in report.acts[1].checks}
    assert failover["the standby owns the alias IP after the crash"].observed is True
    assert failover["never two owners of the alias IP"].observed is True
    checks = {c.what: c for c in report.acts[2].checks}
    assert checks["squeue answers from the new head through the private alias"].detail.startswith("after ")
    assert checks["every job submitted before the crash ran, once"].detail == "4/4 ran, 0 twice"
    assert checks["slurmctld never on both heads"].detail.startswith("0 of ")
    assert f"squeue on head2, through the private alias {PRIVATE_ALIAS}" in shown
    assert "JOBID PARTITION" in shown and "Crashing the active head head1" in shown
    # The install act's HA session is the third on this lab, after two crashes: a head was active, and the node
    # installed from the head that took over after the third crash.
    install = {c.what: c for c in report.acts[3].checks}
    # installed in the new head's database, which sends the node to its own disk from now on
    assert install["installed over the network"].detail.startswith("installed, next boot localboot, ")
    assert install["the installer's head is the private alias of the new head"].observed is True
    assert install["booted from its own disk and answers ping"].observed is True
    new_head, old_head = (
        install["installed over the network"].source,
        install["the installer's head is the private alias of the new head"].source,
    )
    assert {new_head, old_head} == {"head1", "head2"}
    assert "host=node01 ip=198.18.0.101" in install["its marker names its host and address"].detail
    assert seen == ["lab", *["act-start", "act"] * 4, "down"] and known_labs(tmp_path) == []
    assert _leftovers(name) == []
