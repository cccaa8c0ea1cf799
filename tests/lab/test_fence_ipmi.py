"""Fencing with a real agent: Debian's ``fence_ipmilan`` against each head's simulated BMC (OpenIPMI's ipmi_sim, a
lab host of its own on the private network, ``lab.bmcs``). The BMC's chassis power command crashes the head's lab
host (every process SIGKILLed, links down) on ``off`` and boots it on ``on``; the HA daemon confirms the off with
``status`` before it takes over, and without a witness a BMC that does not answer means no takeover."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.lab import bmc
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab, down_lab
from haoscar.scenarios.ha_lab import HaLab, start_ha, wait_until
from haoscar.scenarios.ipmi_lab import bmc_of, install_passwords, ipmi_fencing, with_bmcs
from haoscar.scenarios.lab_fixtures import MakeLab, pings, unique_lab_name
from haoscar.scenarios.owner_sampler import OwnerSampler

pytestmark = pytest.mark.lab


def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")


def _links(lab: Lab, host: str) -> dict[str, str]:
    """The host's interfaces and their state, read from outside (a crashed host runs nothing to ask)."""
    out = subprocess.run(
        ["ip", "-n", lab.netns(host), "-br", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0].split("@")[0]: line.split()[1] for line in out.splitlines() if line.split()[0] != "lo"}


def _fresh(lab: Lab) -> Lab:
    """The lab as it is now: the BMC changes it from its own processes."""
    return Lab.open(lab.name, lab.state_dir)


def _power_log(lab: Lab, head: str) -> str:
    return (bmc.bmc_dir(lab.dir, bmc_of(lab, head)) / "power.log").read_text()


def test_fence_ipmilan_reads_and_switches_a_heads_power_through_its_bmc(make_lab: MakeLab) -> None:
    _root()
    spec = with_bmcs(default_spec())
    lab = make_lab(spec)
    head1, head2 = spec.heads.primary.hostname, spec.heads.standby.hostname
    install_passwords(lab, [head1, head2])
    password = (lab.host_dir(head2) / "etc/haoscar/fence/head1.password").read_text().strip()
    sleeper = lab.popen(head1, ["sleep", "1000"])

    def agent(action: str, secret: str = password) -> subprocess.CompletedProcess[str]:
        lines = f"action={action}\nip=198.18.0.241\nusername=admin\npassword={secret}\nlanplus=1\ncipher=3\n"
        return lab.exec(head2, ["fence_ipmilan"], input=lines, check=False, timeout=60)

    status = agent("status")
    assert status.returncode == 0 and "Status: ON" in status.stdout, status
    wrong = agent("off", secret="not-the-password")
    assert wrong.returncode == 1 and _fresh(lab).host(head1).state == "running", wrong

    off = agent("off")
    assert off.returncode == 0 and "Success: Powered OFF" in off.stdout, off
    now = _fresh(lab)
    assert now.host(head1).state == "crashed" and now.host_pids(head1) == set()
    assert sleeper.wait(5) == -9  # SIGKILLed, like every process of the host
    assert set(_links(lab, head1).values()) == {"DOWN"}, _links(lab, head1)
    status = agent("status")
    assert status.returncode == 2 and "Status: OFF" in status.stdout, status

    on = agent("on")
    assert on.returncode == 0 and "Success: Powered ON" in on.stdout, on
    assert _fresh(lab).host(head1).state == "running"
    assert pings(lab, head2, str(spec.heads.primary.private_ip))
    assert agent("status").returncode == 0
    log = _power_log(lab, head1)
    assert "set power 0" in log and "set power 1" in log  # through ipmi_sim's chassis power command


@pytest.fixture
def fenced_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    _root()
    name = unique_lab_name("fi")
    state = tmp_path_factory.mktemp("fi")  # short: the daemons' control sockets live under it
    try:
        yield Lab.up(with_bmcs(default_spec()), name, state), state
    finally:
        down_lab(name, state)


def _events(ha: HaLab, head: str) -> list[dict[str, object]]:
    path = ha.lab.host_dir(head) / "var/lib/haoscar/ha/events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_without_a_witness_the_standby_fences_through_the_bmc_confirms_off_and_takes_over(
    fenced_lab: tuple[Lab, Path],
) -> None:
    lab, _ = fenced_lab
    spec = with_bmcs(default_spec())
    ha = start_ha(lab, spec, witness=False, fencing=ipmi_fencing(lab, spec))
    try:
        with OwnerSampler(ha) as sampler:
            time.sleep(0.2)
            cut = time.monotonic()
            # head1 stays up and active; only head2 loses it, so only a fence makes the takeover safe
            lab.partition(ha.primary, ha.standby)
            status = ha.wait_for(ha.standby, "active", 40)
            assert pings(lab, "client", ha.vip)
            time.sleep(0.3)
    finally:
        ha.stop()
    last = status["fencing"]["last"]
    assert last["ok"] and last["method"] == "fence-agents" and last["target"] == ha.primary, last
    assert "status: off" in last["message"], last
    now = _fresh(lab)
    assert now.host(ha.primary).state == "crashed" and now.host_pids(ha.primary) == set()
    assert "set power 0" in _power_log(lab, ha.primary)
    assert sampler.first_owned_by(ha.standby, cut) is not None
    assert {s.client_owner for s in sampler.samples[-5:]} == {ha.standby}  # the client's ARP: the VIP is head2's
    assert sampler.max_owners(cut) == 1 and sampler.double_ownership_s(cut) == 0.0


def test_a_bmc_that_does_not_answer_means_no_takeover_without_a_witness(fenced_lab: tuple[Lab, Path]) -> None:
    lab, _ = fenced_lab
    spec = with_bmcs(default_spec())
    ha = start_ha(lab, spec, witness=False, fencing=ipmi_fencing(lab, spec, timeout=4))
    try:
        lab.crash(bmc_of(lab, ha.primary))  # head1's BMC is gone: nothing can prove head1 is off
        with OwnerSampler(ha) as sampler:
            cut = time.monotonic()
            lab.partition(ha.primary, ha.standby)

            def fence_failed() -> bool:
                status = ha.status(ha.standby)
                last = (status or {}).get("fencing", {}).get("last")
                return bool(last) and not last["ok"]

            assert wait_until(fence_failed, 40), ha.logs(ha.standby)
            time.sleep(1.0)
            standby, primary = ha.status(ha.standby), ha.status(ha.primary)
    finally:
        ha.stop()
    assert standby is not None and primary is not None
    assert standby["state"] != "active" and primary["state"] == "active"
    assert sampler.first_owned_by(ha.standby, cut) is None  # the standby never held the VIP
    assert sampler.last_owned_by(ha.primary) is not None and sampler.max_owners(cut) == 1
    last = standby["fencing"]["last"]
    assert last["target"] == ha.primary and "timed out" in last["message"], last
    events = _events(ha, ha.standby)
    assert any(e["kind"] == "fence" and e["severity"] == "critical" and "FAILED" in str(e["message"]) for e in events)
    failed = [e for e in events if e["kind"] == "role" and "fencing head1 failed" in str(e["message"])]
    assert failed and all(e["data"]["cause"] == "takeover-failed" for e in failed), failed  # type: ignore[index]
    assert _fresh(lab).host(ha.primary).state == "running"
