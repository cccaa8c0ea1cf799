"""``haoscar demo --cluster`` (issue 12): a lab cluster (two heads, two namespace compute nodes, a VM installed from
the real image) set up completely and tested with ``haoscar cluster test``, its active head crashed, and tested
again against the new head; the lab torn down. Run as a user runs it, with ``--json``: stdout is one JSON document
(the demo's checks and the cluster act's steps and observations), the live view goes to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from haoscar.lab import known_labs
from haoscar.scenarios.demo_cluster_steps import NAMESPACE_HOME, USER, USER_TEXT
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.timeout(1800)]

NAMESPACE = ["node01", "node02"]
VM = "node03"
CHECKS = ["ssh", "resolve", "home", "time", "slurm", "mpi"]
# every check on the VM; on the namespace nodes those that need no /home unless their NFS client is in the act
EXPECTED = {(check, VM) for check in CHECKS} | {
    (check, node) for check in (CHECKS if NAMESPACE_HOME else ["ssh", "resolve", "time", "slurm"]) for node in NAMESPACE
}
READERS = [*NAMESPACE, VM] if NAMESPACE_HOME else [VM]


def test_demo_cluster_sets_up_tests_survives_a_head_crash_and_tests_again(tmp_path: Path) -> None:
    name = unique_lab_name("dk")
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(tmp_path), "demo", "--cluster", "--json"]
    done = subprocess.run([*argv, "--name", name], capture_output=True, text=True, timeout=1700, check=False)
    (tmp_path / "demo.json").write_text(done.stdout)  # kept by pytest with the run's screen, for a failure's story
    (tmp_path / "demo-screen.txt").write_text(done.stderr)
    assert done.stdout.strip(), done.stderr[-4000:]
    report = json.loads(done.stdout)
    shown = done.stderr
    cluster = report["cluster"]
    failed = "\n".join(f"{s['name']}: {s['detail']}" for s in cluster["steps"] if not s["ok"])
    assert done.returncode == 0 and report["ok"], f"{failed}\nnot run: {cluster['not_run']}\n{shown[-3000:]}"
    assert cluster["not_run"] == [] and all(act["ok"] for act in report["acts"])

    # cluster test before the crash on the old head and after it on the new one: every row passes
    for key in ("test_before", "test_after"):
        test = cluster[key]
        rows = {(row["check"], row["node"]): row for row in test["rows"]}
        assert set(rows) == EXPECTED, (key, sorted(rows))
        assert all(row["ok"] for row in rows.values()) and test["ok"], (key, test["rows"])
    # the crashed head was the active one; the other head took over and says so itself
    assert {cluster["old_head"], cluster["new_head"]} == {"head1", "head2"}
    assert cluster["active_after"] == cluster["new_head"] and cluster["new_head_state"] == "active"
    # the user's file, written on the VM before the crash, reads back as the user on every node after it
    assert cluster["user_file_after"] == dict.fromkeys(READERS, USER_TEXT)
    assert cluster["user_file_replicated_s"] >= 0  # on the standby's disk before the crash
    assert cluster["user_add"]["user"]["name"] == USER and cluster["cluster_sync"]["ok"]
    assert cluster["vm"]["install_s"] > 0 and cluster["vm_home_back_s"] > 0
    if NAMESPACE_HOME:  # the namespace nodes' NFS client came back by itself after the crash
        assert sorted(cluster["nodes_home_back_s"]) == NAMESPACE and min(cluster["nodes_home_back_s"].values()) > 0
    assert cluster["vm_row_after"]["install_state"] == "installed"  # the new head's replicated database
    assert cluster["vm_joined"]["home"] == "198.18.0.3:/home nfs4"  # the real image's join checks passed
    # node sync from the new head: the VM runs the new image version it made, its own files kept
    synced = cluster["node_sync"]
    assert synced["version"] == cluster["vm_row_after"]["image_version"] + 1 and synced["sync"]["new"] >= 1
    assert "Complete and test the cluster: summary" in shown and "Crash of the active head" in shown
    assert known_labs(tmp_path) == []
