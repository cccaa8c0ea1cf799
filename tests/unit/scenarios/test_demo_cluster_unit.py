"""``haoscar demo --cluster`` without a lab: the step runner's record and screen, and the cluster the heads run."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.demo_cluster_setup import cluster_spec, lab_spec
from haoscar.scenarios.demo_steps import ActStopped, StepFailed, Steps
from haoscar.spec import all_nodes


def _fails() -> str:
    raise StepFailed("node03 did not answer")


def _crashes() -> str:
    raise KeyError("slurmctld")


def test_steps_record_what_each_step_saw_and_an_essential_failure_stops_the_act() -> None:
    screen = io.StringIO()
    steps = Steps(Console(file=screen, width=200))
    assert steps.run("first", lambda: "it worked")
    assert not steps.run("second", _fails, essential=False)
    with pytest.raises(ActStopped):
        steps.run("third", _crashes)
    steps.skip(["fourth"])
    record = steps.to_dict()
    assert [(s["name"], s["ok"], s["detail"]) for s in record["steps"]] == [
        ("first", True, "it worked"),
        ("second", False, "node03 did not answer"),
        ("third", False, "KeyError: 'slurmctld'"),
    ]
    assert record["not_run"] == ["fourth"] and record["ok"] is False
    shown = screen.getvalue()
    assert "✓ first" in shown and "✗ second" in shown and "Traceback" not in shown
    Console(file=screen, width=200).print(steps.table("summary"))
    assert "not run" in screen.getvalue()


def test_the_heads_run_the_services_behind_the_alias_and_know_the_vm_node() -> None:
    spec = default_spec()
    heads = cluster_spec(spec)
    assert [s.kind for s in heads.ha.services] == ["dnsmasq", "bootserver", "slurmctld", "chrony", "nfs-ganesha"]
    assert str(heads.heads.primary.private_alias_ip) == str(heads.heads.standby.private_alias_ip) == "198.18.0.3"
    computes = [n.name for n in all_nodes(heads) if n.role == "compute"]
    assert computes == ["node01", "node02", "node03"]  # node03 is the VM: no namespace host in the lab
    lab = lab_spec(spec)
    assert sorted(lab.lab.bmcs) == ["head1", "head2"]
    assert [n.name for n in all_nodes(lab) if n.role == "compute"] == ["node01", "node02"]
