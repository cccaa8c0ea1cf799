"""Lab BMCs without root: the hosts ``lab.bmcs`` adds, ipmi_sim's configuration, and the power program's answers
(the real ipmi_sim and fence_ipmilan run in tests/lab/test_fence_ipmi.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.lab import bmc, bmc_power
from haoscar.lab.defaults import default_spec
from haoscar.lab.layout import LabLayout, layout_from_spec
from haoscar.scenarios.ipmi_lab import with_bmcs
from haoscar.spec.models import Lab as LabSpec


def test_each_bmc_is_a_host_of_its_own_on_the_private_network_and_knows_its_head() -> None:
    layout = layout_from_spec(with_bmcs(default_spec()), "lab")
    bmcs = {h.name: h for h in layout.hosts.values() if h.role == "bmc"}
    assert sorted(bmcs) == ["head1-bmc", "head2-bmc"]
    assert bmcs["head1-bmc"].powers == "head1" and bmcs["head2-bmc"].powers == "head2"
    assert [(i.name, i.network, i.cidr) for i in bmcs["head1-bmc"].interfaces] == [
        ("eth0", "private", "198.18.0.241/24")
    ]
    again = LabLayout.from_json(layout.to_json())  # every CLI call reads the layout back
    assert again.host("head2-bmc").powers == "head2"
    assert all(h.powers is None for h in layout_from_spec(default_spec(), "lab").hosts.values())


def test_a_bmc_for_a_host_that_is_not_a_head_is_refused() -> None:
    spec = default_spec()
    lab = LabSpec.model_validate({**spec.lab.model_dump(), "bmcs": {"node01": "198.18.0.241"}})
    with pytest.raises(UserError, match=r"lab\.bmcs\.node01"):
        layout_from_spec(spec.model_copy(update={"lab": lab}), "lab")


def test_lan_conf_binds_the_bmc_address_with_one_admin_and_the_power_command(tmp_path: Path) -> None:
    layout = layout_from_spec(with_bmcs(default_spec()), "lab")
    base = bmc.write_config(tmp_path / "labs/lab", tmp_path, "lab", layout.host("head1-bmc"))
    text = (base / "lan.conf").read_text()
    password = bmc.password_file(tmp_path / "labs/lab", "head1-bmc").read_text().strip()
    assert "addr 198.18.0.241 623" in text
    assert f'user 2 true "admin" "{password}" admin 10 md5' in text
    assert 'chassis_control "' in text and "-m haoscar.lab.bmc_power" in text and "head1-bmc" in text
    for secret in (base / "lan.conf", base / "password"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # restarting the BMC (a restore of its host) keeps its password
    bmc.write_config(tmp_path / "labs/lab", tmp_path, "lab", layout.host("head1-bmc"))
    assert bmc.password_file(tmp_path / "labs/lab", "head1-bmc").read_text().strip() == password


def test_the_power_program_reads_the_power_of_the_host_it_is_wired_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = layout_from_spec(with_bmcs(default_spec()), "lab")
    (tmp_path / "labs/lab/bmc/head1-bmc").mkdir(parents=True)
    layout.host("head1").state = "running"
    layout.save(tmp_path / "labs/lab/lab.json")
    assert bmc_power.main([str(tmp_path), "lab", "head1-bmc", "get", "power"]) == 0
    layout.host("head1").state = "frozen"  # a paused machine is still powered
    layout.save(tmp_path / "labs/lab/lab.json")
    assert bmc_power.main([str(tmp_path), "lab", "head1-bmc", "get", "power"]) == 0
    layout.host("head1").state = "crashed"
    layout.save(tmp_path / "labs/lab/lab.json")
    assert bmc_power.main([str(tmp_path), "lab", "head1-bmc", "get", "power"]) == 0
    assert capsys.readouterr().out.split() == ["power:1", "power:1", "power:0"]
    assert "get power" in (tmp_path / "labs/lab/bmc/head1-bmc/power.log").read_text()
    assert bmc_power.main([str(tmp_path), "lab", "head1-bmc", "toggle"]) == 2
