"""``fencing: fence-agents`` as used with a BMC: per-head targets, the password file, and the status confirmation
(with fake agents: the real ``fence_ipmilan`` against a simulated BMC runs in tests/lab/test_fence_ipmi.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from haoscar.ha.fencing import agent_options, fence, read_password_file
from haoscar.lab.defaults import default_spec
from haoscar.spec.checks import Parts
from haoscar.spec.fencing_checks import check_bmcs, check_fencing
from haoscar.spec.models import Fencing, Lab

# Records every run's stdin (one block per run) and answers like a fence agent: off -> 0, status -> STATUS_EXIT.
AGENT = """#!/bin/sh
stdin=$(cat)
printf '%s\\n--\\n' "$stdin" >> "{log}"
if echo "$stdin" | grep -q '^action=status$'; then echo "Status: {word}"; exit {status}; fi
echo "Success: Powered OFF"
exit 0
"""


def _agent(tmp_path: Path, status: int, word: str = "OFF") -> tuple[Path, Path]:
    agent, log = tmp_path / "fence_fake", tmp_path / "runs.txt"
    agent.write_text(AGENT.format(log=log, status=status, word=word))
    agent.chmod(0o755)
    return agent, log


def _runs(log: Path) -> list[list[str]]:
    return [block.strip().splitlines() for block in log.read_text().split("--\n") if block.strip()]


def _password_file(tmp_path: Path, mode: int = 0o600, text: str = "s3cret\n") -> Path:
    path = tmp_path / "head1.password"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _config(agent: Path, password: Path) -> Fencing:
    return Fencing(
        method="fence-agents",
        agent=str(agent),
        timeout=5,
        options={"username": "admin", "password_file": str(password).replace("head1", "{peer}"), "lanplus": "1"},
        targets={"head1": {"ip": "198.18.0.241"}, "head2": {"ip": "198.18.0.242"}},
    )


def test_targets_give_each_head_its_own_bmc_over_the_shared_options() -> None:
    config = Fencing(
        method="fence-agents",
        agent="fence_ipmilan",
        options={"username": "admin", "ip": "198.18.0.9", "password_file": "/etc/haoscar/fence/{peer}.password"},
        targets={"head1": {"ip": "198.18.0.241"}},
    )
    assert agent_options(config, "head1") == {
        "action": "off",
        "plug": "head1",
        "username": "admin",
        "ip": "198.18.0.241",
        "password_file": "/etc/haoscar/fence/head1.password",
    }
    assert agent_options(config, "head2")["ip"] == "198.18.0.9"  # no target entry: the shared options


def test_off_is_confirmed_by_a_status_run_and_the_password_goes_on_stdin(tmp_path: Path) -> None:
    agent, log = _agent(tmp_path, status=2)
    result = asyncio.run(fence(_config(agent, _password_file(tmp_path)), "head1"))
    assert result.ok, result
    off, status = _runs(log)
    assert "action=off" in off and "ip=198.18.0.241" in off and "password=s3cret" in off
    assert not any(line.startswith("password_file=") for line in off)
    assert "action=status" in status and "password=s3cret" in status and "ip=198.18.0.241" in status
    assert "status: off" in result.message


def test_an_off_that_status_does_not_confirm_is_a_failed_fence(tmp_path: Path) -> None:
    agent, _ = _agent(tmp_path, status=0, word="ON")
    result = asyncio.run(fence(_config(agent, _password_file(tmp_path)), "head1"))
    assert not result.ok and "still on" in result.message


def test_an_unknown_status_is_a_failed_fence(tmp_path: Path) -> None:
    agent, _ = _agent(tmp_path, status=1, word="ERROR")
    result = asyncio.run(fence(_config(agent, _password_file(tmp_path)), "head1"))
    assert not result.ok and "status unknown (exit 1" in result.message


def test_a_password_file_readable_by_others_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    agent, log = _agent(tmp_path, status=2)
    result = asyncio.run(fence(_config(agent, _password_file(tmp_path, mode=0o644)), "head1"))
    assert not result.ok and "chmod 600" in result.message
    assert not log.exists()


def test_a_missing_or_empty_password_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        read_password_file(str(_password_file(tmp_path, text="")))
    agent, _ = _agent(tmp_path, status=2)
    config = _config(agent, tmp_path / "nowhere" / "head1.password")
    result = asyncio.run(fence(config, "head1"))
    assert not result.ok and "nowhere/head1.password" in result.message


def _parts(fencing: Fencing | None = None, lab: Lab | None = None) -> Parts:
    spec = default_spec()
    ha = spec.ha.model_copy(update={"fencing": fencing}) if fencing else spec.ha
    heads = {"primary": spec.heads.primary, "standby": spec.heads.standby}
    networks = {"private": spec.networks.private, "public": spec.networks.public}
    return Parts(networks=networks, heads=heads, ha=ha, lab=lab or spec.lab)


def test_a_password_inline_in_the_spec_is_refused_naming_the_field() -> None:
    fencing = Fencing(method="fence-agents", agent="fence_ipmilan", options={"password": "x"}, targets={"nohead": {}})
    findings = dict(check_fencing(_parts(fencing)))
    assert "password_file" in findings[("ha", "fencing", "options", "password")]
    assert "not a head" in findings[("ha", "fencing", "targets", "nohead")]
    fine = Fencing(method="fence-agents", agent="fence_ipmilan", options={"password_file": "/etc/haoscar/p"})
    assert list(check_fencing(_parts(fine))) == []


def test_lab_bmcs_belong_to_heads_and_sit_on_a_cluster_network() -> None:
    good = Lab.model_validate({"bmcs": {"head1": "198.18.0.241", "head2": "198.18.0.242"}})
    assert list(check_bmcs(_parts(lab=good))) == []
    bad = Lab.model_validate({"bmcs": {"node01": "198.18.0.241", "head1": "10.0.0.1", "head2": "198.18.0.241"}})
    findings = dict(check_bmcs(_parts(lab=bad)))
    assert "not a head" in findings[("lab", "bmcs", "node01")]
    assert "none of the cluster's networks" in findings[("lab", "bmcs", "head1")]
    assert "already the BMC of node01" in findings[("lab", "bmcs", "head2")]


def test_the_password_never_reaches_the_fence_message(tmp_path: Path) -> None:
    agent = tmp_path / "fence_chatty"
    # like fence_ipmilan with verbose=1: it prints the ipmitool command line, password included
    agent.write_text(
        '#!/bin/sh\ncat > /dev/null\necho "ipmitool -H 198.18.0.241 -U admin -P s3cret chassis power off"\nexit 1\n'
    )
    agent.chmod(0o755)
    result = asyncio.run(fence(_config(agent, _password_file(tmp_path)), "head1"))
    assert not result.ok and "s3cret" not in result.message and "-P ***" in result.message
