"""`haoscar demo`'s cluster act (run by `make demo`): Slurm jobs through a crash of the active head, the queue
shown from the new head through the private alias, the crashed head restored, the lab torn down. It runs after the
failover act, as in `make demo`: a second HA session on a lab whose first one moved the role and back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.lab import known_labs
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.demo import cluster_act, failover_act, run_demo
from haoscar.scenarios.demo_cluster import PRIVATE_ALIAS
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]


def test_demo_cluster_act_keeps_jobs_and_shows_the_queue_from_the_new_head(tmp_path: Path) -> None:
    screen = io.StringIO()
    name = unique_lab_name("dc")
    seen: list[str] = []
    console = Console(file=screen, width=120)
    report = run_demo(
        default_spec(), tmp_path, name, acts=[failover_act(console), cluster_act(console)],
        observe=lambda kind, _: seen.append(kind),
    )  # fmt: skip
    shown = screen.getvalue()
    assert report.ok, (report.to_dict(), shown[-3000:])
    checks = {c.what: c for c in report.acts[1].checks}
    assert checks["squeue answers from the new head through the private alias"].detail.startswith("after ")
    assert checks["every job submitted before the crash ran, once"].detail == "4/4 ran, 0 twice"
    assert checks["slurmctld never on both heads"].detail.startswith("0 of ")
    assert f"squeue on head2, through the private alias {PRIVATE_ALIAS}" in shown
    assert "JOBID PARTITION" in shown and "Crashing the active head head1" in shown
    assert seen == ["lab", "act-start", "act", "act-start", "act", "down"] and known_labs(tmp_path) == []
