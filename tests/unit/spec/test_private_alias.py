"""The private alias IP (``heads.*.private_alias_ip``) and the public ping targets: good and bad specs, the
compute-facing address and the warning of a spec without a private alias."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

from spec_cases import BASE, edit, line_of, problems

from haoscar.spec import check_text
from haoscar.spec.topology import compute_facing_address, spec_warnings

PRIMARY = (
    "    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n"
    "    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1\n"
)
STANDBY = PRIMARY.replace("198.18.1.1", "198.18.1.2")


def with_alias(primary: str = "198.18.0.4", standby: str | None = "198.18.0.4", text: str = BASE) -> str:
    changes = [(PRIMARY, PRIMARY.replace("    netmask:", f"    private_alias_ip: {primary}\n    netmask:"))]
    if standby is not None:
        changes.append((STANDBY, STANDBY.replace("    netmask:", f"    private_alias_ip: {standby}\n    netmask:")))
    return edit(text, *changes)


def test_a_private_alias_on_both_heads_is_valid_and_is_the_compute_facing_address() -> None:
    spec, found = check_text(with_alias())
    assert found == [] and spec is not None
    assert compute_facing_address(spec) == IPv4Address("198.18.0.4")
    assert spec_warnings(spec) == []


def test_without_a_private_alias_the_primary_private_ip_is_used_and_a_warning_says_so() -> None:
    spec, found = check_text(BASE)
    assert found == [] and spec is not None
    assert compute_facing_address(spec) == IPv4Address("198.18.0.1")
    [warning] = spec_warnings(spec)
    assert "private_alias_ip is not set" in warning and "will not follow a failover" in warning


def test_heads_with_different_private_aliases() -> None:
    text = with_alias(standby="198.18.0.5")
    line = line_of(text, "private_alias_ip: 198.18.0.5")
    assert problems(text) == [
        f"cluster.yaml:{line}: heads.standby.private_alias_ip: 198.18.0.5 differs from the primary's private alias "
        "IP 198.18.0.4; the private alias follows the active head, so both heads name the same one"
    ]


def test_a_private_alias_on_one_head_only() -> None:
    [problem] = problems(with_alias(standby=None))
    assert "heads.standby:" in problem and "give both heads the same one" in problem


def test_a_private_alias_outside_the_private_subnet() -> None:
    [problem] = problems(with_alias("198.19.0.50", "198.19.0.50"))
    assert "heads.primary.private_alias_ip: 198.19.0.50 is outside the private subnet 198.18.0.0/24" in problem


def test_a_private_alias_that_is_a_nodes_address() -> None:
    text = with_alias("198.18.0.101", "198.18.0.101")
    line = line_of(text, "private_alias_ip: 198.18.0.101" + PRIMARY[PRIMARY.index("\n") :])
    assert problems(text) == [
        f"cluster.yaml:{line}: heads.primary.private_alias_ip: 198.18.0.101 is also the address of clients[0] "
        "(node02); the private alias IP must be a free address of the private subnet that no node or head uses"
    ]


def test_a_private_alias_that_is_a_heads_own_address() -> None:
    [problem] = problems(with_alias("198.18.0.2", "198.18.0.2"))
    assert "198.18.0.2 is also the address of heads.standby (head2)" in problem


def test_ping_targets_good_and_bad() -> None:
    good = edit(BASE, ("  failback: manual\n", "  failback: manual\n  ping_targets: [198.19.0.1, 198.19.0.200]\n"))
    assert problems(good) == []
    bad = edit(BASE, ("  failback: manual\n", "  failback: manual\n  ping_targets: [198.19.0.1, 198.19.0.10]\n"))
    [problem] = problems(bad)
    assert "ha.ping_targets[1]: 198.19.0.10 is heads.primary.alias_ip" in problem


def test_spec_validate_warns_but_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(BASE)
    argv = [sys.executable, "-m", "haoscar", "spec", "validate", str(path)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "warning: heads.*.private_alias_ip is not set" in " ".join(run.stdout.split())
    as_json = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert "private_alias_ip is not set" in json.loads(as_json.stdout)["warnings"][0]
    path.write_text(with_alias())
    quiet = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(quiet.stdout)["warnings"] == []
    assert json.loads(quiet.stdout)["private_alias_ip"] == "198.18.0.4"


def test_a_colliding_private_alias_is_exit_2_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(with_alias("198.18.0.101", "198.18.0.101"))
    run = subprocess.run(
        [sys.executable, "-m", "haoscar", "spec", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert "heads.primary.private_alias_ip: 198.18.0.101 is also the address of clients[0] (node02)" in run.stderr
    assert "Traceback" not in run.stderr
