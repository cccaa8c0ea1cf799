"""Every wizard form with bad input shows the CLI's message (the command's own problem) next to the field, and
changes nothing; good input changes the cluster as the CLI command does."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from webtest import Browser, make_ctx, run_console
from wizardtest import (
    FakeWire,
    apply_lab_spec,
    cluster_dump,
    direct_error,
    expected_next_to_fields,
    field_errors,
    import_image,
    submit,
    summary,
    typed_value,
)

from haoscar.commands import dhcp, images, install, macs, netboot, standby, wizard_steps
from haoscar.commands.apply import ApplySpec
from haoscar.commands.cluster_test import ClusterTestRequest
from haoscar.commands.env import Env
from haoscar.commands.nodes import DefineClients, list_nodes
from haoscar.commands.wizard import progress
from haoscar.commands.wizard_form_defs import form_named
from haoscar.commands.wizard_forms import cli_line, values_of
from haoscar.errors import FieldError
from haoscar.provision.dhcp_packet import build_frame, build_request


@pytest.fixture
def lab_state(console_state: Path) -> Path:
    """The admin, the lab's spec (head1, head2, node01-02) and the image oscarimage in the store."""
    apply_lab_spec(console_state)
    import_image(console_state, "oscarimage")
    return console_state


# (step, form data, the command and request the CLI would run with the same values)
FIELD_CASES: list[tuple[str, dict[str, str], Any, Any]] = [
    (
        "clients",
        {"form": "clients", "image": "oscarimage", "base_name": "node", "count": "0", "start_ip": "198.18.0.50"},
        wizard_steps.define_clients,
        DefineClients(image="oscarimage", start_ip="198.18.0.50", base_name="node", count=0),
    ),
    (
        "clients",
        {"form": "clients", "image": "oscarimage", "base_name": "node", "count": "2", "start_ip": "198.18.0.300"},
        wizard_steps.define_clients,
        DefineClients(image="oscarimage", start_ip="198.18.0.300", base_name="node", count=2),
    ),
    (
        "clients",
        {"form": "clients", "image": "oscarimage", "base_name": "node0", "count": "1", "start_ip": "198.18.0.60",
         "start_number": "1", "padding": "0"},
        wizard_steps.define_clients,
        DefineClients(image="oscarimage", start_ip="198.18.0.60", base_name="node0", count=1),
    ),
    (
        "standby",
        {"form": "standby", "alias_ip": "198.19.0.300", "local_ip": "198.18.0.9"},
        standby.standby_add,
        standby.StandbyServer(alias_ip="198.19.0.300", local_ip="198.18.0.9"),
    ),
    (
        "standby",
        {"form": "standby", "alias_ip": "198.19.0.10", "local_ip": "198.18.0.9", "private_interface": "eth1"},
        standby.standby_add,
        standby.StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.9", private_interface="eth1"),
    ),
    (
        "packages",
        {"form": "packages", "packages": "htop Bad_Name"},
        wizard_steps.select_packages,
        wizard_steps.SelectPackages(["htop", "Bad_Name"]),
    ),
    (
        "image",
        {"form": "fetch", "name": "serverimage", "golden_client": "head1", "source_root": "srv"},
        images.image_fetch,
        images.FetchRequest("serverimage", "head1", source_root="srv", ip_assignment="static", post_install="beep"),
    ),
    (
        "image",
        {"form": "build", "name": "Bad Name"},
        images.image_build,
        images.BuildImage("Bad Name", ip_assignment="static", post_install="beep"),
    ),
    (
        "image",
        {"form": "import", "name": "golden", "directory": "/srv", "ip_assignment": "replicant"},
        images.image_import,
        images.ImportImage("golden", Path("/srv"), ip_assignment="replicant", post_install="beep"),
    ),
    (
        "macs",
        {"form": "collect", "interface": " ", "timeout": "60"},
        macs.collect,
        macs.CollectMacs(interface=""),
    ),
    (
        "macs",
        {"form": "collect", "interface": "eth0", "timeout": "0"},
        macs.collect,
        macs.CollectMacs(interface="eth0", timeout=0),
    ),
    (
        "image",
        {"form": "import", "name": "x", "directory": "/nonexistent/tree"},
        images.image_import,
        images.ImportImage("x", Path("/nonexistent/tree"), "static", "beep"),
    ),
    (
        "image",
        {"form": "build", "name": "oscarimage", "suite": "no such suite"},
        images.image_build,
        images.BuildImage("oscarimage", "no such suite", ip_assignment="static", post_install="beep"),
    ),
    (
        "macs",
        {"form": "collect", "interface": "nosuch0", "timeout": "1"},
        macs.collect,
        macs.CollectMacs(interface="nosuch0", timeout=1),
    ),
    (
        "macs",
        {"form": "assign", "node": "node01", "mac": "zz:zz"},
        wizard_steps.assign_mac,
        macs.AssignMac("node01", "zz:zz"),
    ),
    (
        "install",
        {"form": "install_settings", "stall_timeout": "-5"},
        install.configure,
        install.InstallSettings(stall_timeout=-5),
    ),
    (
        "complete",
        {"form": "complete", "spec": "/nonexistent.yaml"},
        wizard_steps.complete_installation,
        wizard_steps.CompleteInstallation(Path("/nonexistent.yaml")),
    ),
    (
        "test",
        {"form": "test", "nodes": "@compute", "sync_nodes": "node[01-"},
        wizard_steps.setup_test,
        wizard_steps.SetupTest(ClusterTestRequest(), sync_nodes="node[01-"),
    ),
    (
        "dhcp",
        {"form": "dhcp", "interface": "no such if!"},
        dhcp.configure,
        dhcp.ConfigureDhcp(interface="no such if!"),
    ),
    (
        "install",
        {"form": "install_settings", "stall_timeout": "", "token_ttl": ""},
        install.configure,
        install.InstallSettings(),
    ),
    (
        "complete",
        {"form": "complete", "spec": "/nonexistent.yaml", "ssh_port": "0"},
        wizard_steps.complete_installation,
        wizard_steps.CompleteInstallation(Path("/nonexistent.yaml"), ssh_port=0),
    ),
    (
        "test",
        {"form": "test", "nodes": "@compute", "user": "Bad User", "time_threshold": "0"},
        wizard_steps.setup_test,
        wizard_steps.SetupTest(ClusterTestRequest(user="Bad User", time_threshold=0)),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("step", "data", "command", "request_"), FIELD_CASES)
def test_bad_input_shows_the_commands_message_next_to_its_field(
    lab_state: Path, step: str, data: dict[str, str], command: Any, request_: Any
) -> None:
    expected = expected_next_to_fields(direct_error(lab_state, command, request_))
    before = cluster_dump(lab_state)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get(f"/wizard/{step}")
        page = await submit(b, step, data)
        assert page.status in (200, 422)
        shown = field_errors(b.text)
        assert shown == expected
        for field in expected:
            assert f'id="{field}" name="{field}"' in b.text
            assert f'aria-invalid="true" aria-describedby="{field}-error"' in b.text
        assert 'role="alert"' in b.text and "did not succeed" in summary(b.text)

    run_console(make_ctx(lab_state), scenario)
    assert cluster_dump(lab_state) == before


# Commands whose errors name no field, on a form with one field they can be about: shown next to it, whole.
BLAMED_CASES: list[tuple[str, dict[str, str], Any, Any, str]] = [
    ("server", {"form": "apply", "file": "/nonexistent/cluster.yaml"}, wizard_steps.apply_spec,
     ApplySpec(Path("/nonexistent/cluster.yaml")), "file"),
    ("macs", {"form": "assign_all", "nodeset": "nosuch[1-2]"}, macs.assign_all, macs.AssignAll("nosuch[1-2]"),
     "nodeset"),
    ("netboot", {"form": "netboot", "nodeset": "node["}, netboot.sync, netboot.SyncNetboot("node["), "nodeset"),
]  # fmt: skip


@pytest.mark.parametrize("case", BLAMED_CASES, ids=[case[4] + "-" + case[0] for case in BLAMED_CASES])
def test_an_error_naming_no_field_goes_next_to_the_forms_one_field(
    lab_state: Path, case: tuple[str, dict[str, str], Any, Any, str]
) -> None:
    step, data, command, request_, field = case
    exc = direct_error(lab_state, command, request_)
    assert not isinstance(exc, FieldError)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get(f"/wizard/{step}")
        await submit(b, step, data)
        assert field_errors(b.text) == {field: str(exc)}

    run_console(make_ctx(lab_state), scenario)


def test_the_cli_words_are_the_same_details(lab_state: Path) -> None:
    """The CLI prints the same detail after its option name: what the page shows is in the CLI's message."""
    exc = direct_error(lab_state, wizard_steps.define_clients, FIELD_CASES[0][3])
    assert isinstance(exc, FieldError)
    assert str(exc) == "--count 0: define at least 1 client"
    assert expected_next_to_fields(exc) == {"count": "0: define at least 1 client"}


# Errors of commands that name no field: the page shows the command's whole message in the alert summary.
SUMMARY_CASES: list[tuple[str, dict[str, str], Any, Any]] = [
    ("macs", {"form": "assign", "node": "nosuch", "mac": "52:54:00:00:00:01"}, macs.assign,
     macs.AssignMac("nosuch", "52:54:00:00:00:01")),
]  # fmt: skip


@pytest.mark.parametrize(("step", "data", "command", "request_"), SUMMARY_CASES)
def test_errors_without_a_field_show_the_whole_cli_message(
    lab_state: Path, step: str, data: dict[str, str], command: Any, request_: Any
) -> None:
    exc = direct_error(lab_state, command, request_)
    assert not isinstance(exc, FieldError)
    before = cluster_dump(lab_state)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get(f"/wizard/{step}")
        await submit(b, step, data)
        assert " ".join(str(exc).split()) in " ".join(summary(b.text).split())

    run_console(make_ctx(lab_state), scenario)
    assert cluster_dump(lab_state) == before


def test_a_value_that_is_no_number_is_refused_in_the_clis_words(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/clients")
        data = {"form": "clients", "base_name": "node", "count": "two", "padding": "x", "start_ip": "198.18.0.50"}
        page = await submit(b, "clients", data)
        assert page.status == 422
        assert field_errors(b.text) == {
            "count": "'two' is not a valid integer.",
            "padding": "'x' is not a valid integer.",
        }
        assert typed_value(b.text, "count") == "two"

    run_console(make_ctx(lab_state), scenario)


def test_define_clients_adds_the_nodes_and_shows_the_cli_line(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/clients")
        data = {"form": "clients", "image": "oscarimage", "base_name": "node", "count": "2", "start_number": "3",
                "padding": "2", "start_ip": "198.18.0.103"}  # fmt: skip
        page = await submit(b, "clients", data)
        assert page.status == 200
        assert "defined 2 clients node[03-04]" in b.text
        cli = "haoscar node add --image oscarimage --base-name node --count 2 --start-number 3 --padding 2 "
        assert cli + "--start-ip 198.18.0.103" in b.text

    run_console(make_ctx(lab_state), scenario)
    with Env(lab_state) as env:
        rows = {row.name: row for row in list_nodes(env.database)}
    assert (rows["node03"].ip, rows["node04"].ip, rows["node04"].image) == (
        "198.18.0.103",
        "198.18.0.104",
        "oscarimage",
    )


def test_add_standby_server_defines_the_standby_with_the_seeds_defaults(console_state: Path) -> None:
    import_image(console_state, "serverimage")

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/standby")
        for name, value in (("image", "serverimage"), ("primary_public_interface", "eth1"), ("hostname", "standby")):
            assert typed_value(b.text, name) == value
        data = {"form": "standby", "alias_ip": "138.47.21.199", "local_ip": "192.168.3.200",
                "netmask": "255.255.255.0", "gateway": "192.168.3.1"}  # fmt: skip
        page = await submit(b, "standby", data)
        assert page.status == 200 and "standby head standby defined (192.168.3.200, alias 138.47.21.199)" in b.text

    run_console(make_ctx(console_state), scenario)
    with Env(console_state) as env:
        row = next(r for r in list_nodes(env.database) if r.role == "standby")
    assert (row.name, row.ip, row.image) == ("standby", "192.168.3.200", "serverimage")


def test_import_select_packages_and_assign_macs_change_the_cluster(lab_state: Path) -> None:
    tree = lab_state.parent / "golden"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("golden\n")
    with Env(lab_state) as env:  # two machines asked for DHCP while `mac collect` listened (as its tests drive it)
        wire = [build_frame(build_request(mac, 1), mac) for mac in ("52:54:00:dd:00:01", "52:54:00:dd:00:02")]
        macs.collect(env, macs.CollectMacs("eth0", timeout=5), source=FakeWire(wire))

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/image?form=import")
        page = await submit(b, "image", {"form": "import", "name": "serverimage", "directory": str(tree)})
        assert page.status == 200 and "image serverimage version 1" in b.text
        await b.get("/wizard/packages")
        await submit(b, "packages", {"form": "packages", "packages": "htop,slurmd"})
        assert "packages selected: htop, slurmd" in b.text
        await b.get("/wizard/macs")
        assert 'id="mac-52-54-00-dd-00-01"' in b.text and 'id="assign-52-54-00-dd-00-01"' in b.text
        await submit(b, "macs", {"form": "assign", "node": "node02", "mac": "52:54:00:dd:00:01"})
        assert "1 MAC(s) assigned: node02=52:54:00:dd:00:01" in b.text
        await submit(b, "macs", {"form": "assign_all", "nodeset": "node[01-02]"})
        assert "node01=52:54:00:dd:00:02" in b.text

    run_console(make_ctx(lab_state), scenario)
    with Env(lab_state) as env:
        facts = progress(env).facts
        rows = {row.name: row for row in list_nodes(env.database)}
        assert images.image_show(env, images.ShowImage("serverimage")).summary.current == 1
    assert facts.packages_selected == ["htop", "slurmd"]
    assert (rows["node01"].mac, rows["node02"].mac) == ("52:54:00:dd:00:02", "52:54:00:dd:00:01")
    assert rows["node01"].install_state == "mac-assigned" and facts.sightings == 0


def test_the_cli_line_quotes_every_value() -> None:
    form = form_named("fetch")
    assert form is not None
    line = cli_line(form, values_of(form, {"golden_client": "head1; rm -rf /", "ssh_user": "r o o t"}))
    assert line == (
        "haoscar image fetch serverimage --golden-client 'head1; rm -rf /' --ssh-user 'r o o t' "
        "--ip-assignment static --post-install beep"
    )
    assert shlex.split(line)[5:8] == ["head1; rm -rf /", "--ssh-user", "r o o t"]


def test_install_server_packages_lists_the_tools_and_applies_the_spec(console_state: Path) -> None:
    spec = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/server")
        assert 'id="tool-dnsmasq"' in b.text and 'id="tool-debootstrap"' in b.text
        assert typed_value(b.text, "file") == "/etc/haoscar/cluster.yaml"
        page = await submit(b, "server", {"form": "apply", "file": str(spec)})
        assert page.status == 200 and "spec applied: 4 added" in b.text
        assert f"haoscar spec apply {spec}" in b.text

    run_console(make_ctx(console_state), scenario)
    with Env(console_state) as env:
        assert {row.name for row in list_nodes(env.database)} == {"head1", "head2", "node01", "node02"}
