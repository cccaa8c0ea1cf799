"""`haoscar demo`'s function: the lab is always torn down, also when an act fails (the acts themselves pass in
tests/lab/test_lab_demo_cluster.py, which runs every act of `demo --install` on one lab)."""

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


def test_demo_tears_down_when_an_act_fails(tmp_path: Path) -> None:
    name = unique_lab_name("d")

    def broken(lab: Lab, spec: ClusterSpec) -> ActResult:
        lab.popen("head1", ["sleep", "300"])  # a daemon the teardown must also end
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-act

    with pytest.raises(KeyboardInterrupt):
        run_demo(default_spec(), tmp_path, name, acts=[Act("broken", broken)])
    assert _leftovers(name) == [] and known_labs(tmp_path) == []
