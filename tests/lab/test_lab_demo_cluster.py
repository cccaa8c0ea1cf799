"""`haoscar demo --install`'s function (the acts `make demo` runs, then the install act): Slurm jobs through a crash
of the active head, the queue shown from the new head through the private alias, the crashed head restored; then a
third HA session on the same lab, after two crashes, whose active head serves a VM's network install after a third
crash; the lab torn down. The cluster act runs after the failover act, as in `make demo`: a second HA session on a
lab whose first one moved the role and back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.lab import known_labs
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.demo import default_acts, run_demo
from haoscar.scenarios.demo_cluster import PRIVATE_ALIAS
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

INSTALLER_CACHE = Path("/var/tmp/haoscar-test-cache/installer")  # shared with the other install tests


def test_demo_cluster_act_keeps_jobs_and_shows_the_queue_from_the_new_head(tmp_path: Path) -> None:
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
    checks = {c.what: c for c in report.acts[2].checks}
    assert checks["squeue answers from the new head through the private alias"].detail.startswith("after ")
    assert checks["every job submitted before the crash ran, once"].detail == "4/4 ran, 0 twice"
    assert checks["slurmctld never on both heads"].detail.startswith("0 of ")
    assert f"squeue on head2, through the private alias {PRIVATE_ALIAS}" in shown
    assert "JOBID PARTITION" in shown and "Crashing the active head head1" in shown
    # The install act's HA session is the third on this lab, after two crashes: a head was active, and the node
    # installed from the head that took over after the third crash.
    install = {c.what: c for c in report.acts[3].checks}
    assert install["installed over the network"].detail.startswith("installed, ")
    new_head, old_head = (
        install["installed over the network"].source,
        install["the installer's head is the private alias of the new head"].source,
    )
    assert {new_head, old_head} == {"head1", "head2"}
    assert "host=node01 ip=198.18.0.101" in install["its marker names its host and address"].detail
    assert seen == ["lab", *["act-start", "act"] * 4, "down"] and known_labs(tmp_path) == []
