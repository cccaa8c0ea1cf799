"""`haoscar demo`'s function: the lab comes up, the reachability and failover acts pass, the lab is always torn down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haoscar.lab import Lab, known_labs
from haoscar.lab.defaults import default_spec
from haoscar.lab.names import NETNS_DIR, netns_prefix
from haoscar.scenarios.demo import Act, ActResult, run_demo
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.spec import ClusterSpec

pytestmark = pytest.mark.lab


def _leftovers(name: str) -> list[str]:
    return [n for n in os.listdir(NETNS_DIR) if n.startswith(netns_prefix(name))] if os.path.isdir(NETNS_DIR) else []


def test_demo_proves_reachability_and_leaves_nothing(tmp_path: Path) -> None:
    name = unique_lab_name("d")
    seen: list[str] = []
    report = run_demo(default_spec(), tmp_path, name, observe=lambda kind, _: seen.append(kind))
    assert report.ok, report.to_dict()
    checks = {(c.source, c.target, c.address): c.observed for c in report.acts[0].checks}
    assert checks[("head1", "node01", "198.18.0.101")] is True
    assert checks[("client", "head1", "198.19.0.11")] is True
    assert checks[("client", "head1", "198.18.0.1")] is False
    assert seen == ["lab", "act-start", "act", "act-start", "act", "down"]
    failover = {c.what: c for c in report.acts[1].checks}
    assert failover["the standby owns the alias IP after the crash"].observed is True
    assert failover["never two owners of the alias IP"].observed is True
    assert _leftovers(name) == [] and known_labs(tmp_path) == []


def test_demo_tears_down_when_an_act_fails(tmp_path: Path) -> None:
    name = unique_lab_name("d")

    def broken(lab: Lab, spec: ClusterSpec) -> ActResult:
        lab.popen("head1", ["sleep", "300"])  # a daemon the teardown must also end
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-act

    with pytest.raises(KeyboardInterrupt):
        run_demo(default_spec(), tmp_path, name, acts=[Act("broken", broken)])
    assert _leftovers(name) == [] and known_labs(tmp_path) == []
