"""`haoscar demo`'s function: the lab comes up, the reachability and failover acts pass, the lab is always torn down."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.lab import Lab, known_labs
from haoscar.lab.defaults import default_spec
from haoscar.lab.names import NETNS_DIR, netns_prefix
from haoscar.scenarios.demo import Act, ActResult, install_act, run_demo
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.spec import ClusterSpec

pytestmark = pytest.mark.lab

INSTALLER_CACHE = Path("/var/tmp/haoscar-test-cache/installer")  # shared with the other install tests


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


def test_demo_install_act_installs_a_vm_client_that_boots_from_its_disk(tmp_path: Path) -> None:
    # `haoscar demo --install`'s third act on its own: the installer's kernel comes from the tests' shared cache.
    state = tmp_path / "state"
    (state / "cache").mkdir(parents=True)
    INSTALLER_CACHE.mkdir(parents=True, exist_ok=True)
    (state / "cache" / "installer").symlink_to(INSTALLER_CACHE)
    screen = io.StringIO()
    name = unique_lab_name("d")
    report = run_demo(default_spec(), tmp_path, name, acts=[install_act(Console(file=screen, width=120), state)])
    checks = {c.what: c for c in report.acts[0].checks}
    assert report.ok, (report.to_dict(), screen.getvalue()[-3000:])
    assert checks["installed over the network"].detail.startswith("installed, ")
    assert checks["installed over the network"].source == "head2"  # the new head, after head1 crashed
    assert "host=node01 ip=198.18.0.101" in checks["its marker names its host and address"].detail
    assert _leftovers(name) == [] and known_labs(tmp_path) == []
