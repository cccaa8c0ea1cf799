"""Commands name the request FIELD to fix (``FieldError``), never a CLI flag: a web form can put the detail next
to the field, and the CLI (tests/unit/cli/test_field_flags.py) prints it with the flag's name."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from haoscar.commands import dhcp, ha, macs, netboot
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.lab import SetLink, lab_link
from haoscar.commands.nodes import DefineClients, SetNodes, node_add, node_set
from haoscar.commands.standby import StandbyServer, standby_add
from haoscar.db.session import DB_FILE, open_database
from haoscar.errors import FieldError, FieldProblem, NotFound, ref
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    spec, problems = check_text(LAB, "lab.yaml")
    assert spec is not None, problems
    db = open_database(state)
    apply_spec(db, spec)
    db.close()
    return state / DB_FILE


@pytest.fixture
def env(tmp_path: Path, template: Path) -> Iterator[Env]:
    shutil.copy(template, tmp_path / DB_FILE)
    with Env(tmp_path) as environment:
        yield environment


def clients(**fields: object) -> DefineClients:
    values: dict[str, object] = {"image": "oscarimage", "start_ip": "198.18.0.150", "base_name": "cn", "count": 2}
    return DefineClients(**(values | fields))  # type: ignore[arg-type]


def refused(call: object) -> FieldError:
    assert callable(call)
    with pytest.raises(FieldError) as caught:
        call()
    return caught.value


def test_define_clients_names_the_field_and_says_what_is_wrong_without_it(env: Env) -> None:
    error = refused(lambda: node_add(env, clients(count=0)))
    assert (error.field, error.detail) == ("count", "0: define at least 1 client")
    error = refused(lambda: node_add(env, clients(start_ip="10.0.0.300")))
    assert error.field == "start_ip"
    assert error.detail.startswith("'10.0.0.300' is not an IPv4 address; write four numbers")
    error = refused(lambda: node_add(env, clients(start_ip="198.18.5.10")))
    assert error.field == "start_ip"
    assert error.detail.startswith("198.18.5.10 is outside the subnet 198.18.0.0/24")
    error = refused(lambda: node_add(env, clients(base_name="node", count=2, padding=2)))
    assert error.field == "base_name"
    assert error.detail == (
        "node names already defined: node[01-02]; pick another base_name or start_number, or delete them first "
        "with `haoscar node delete`"
    )


def test_an_unknown_image_is_a_field_error_and_still_not_found(env: Env) -> None:
    error = refused(lambda: node_add(env, clients(image="ghost")))
    assert isinstance(error, NotFound)
    assert error.field == "image"
    assert error.detail.startswith("unknown image 'ghost'; known images: ")


def test_advice_names_other_fields_in_the_words_of_whoever_renders_it(env: Env) -> None:
    error = refused(lambda: node_add(env, clients(nodeset="cn[1-2]")))
    assert error.field == "nodeset"
    labels = {"nodeset": "Node set", "base_name": "Base name", "count": "Number of clients"}
    assert error.render(labels.__getitem__) == (
        "give either Node set or Base name with Number of clients, not both",
        [],
    )
    # str() (and the CLI, unless a command says otherwise) spells a field as its flag.
    assert str(error) == "give either --nodeset or --base-name with --count, not both"


def test_node_set_names_mac_and_ip(env: Env) -> None:
    error = refused(lambda: node_set(env, SetNodes("node02", ip="198.18.0.1")))
    assert (error.field, error.detail) == ("ip", "198.18.0.1 is already used by node head1; pick a free address")
    node_set(env, SetNodes("node01", mac="52:54:00:ab:cd:01"))
    error = refused(lambda: node_set(env, SetNodes("node02", mac="52:54:00:ab:cd:01")))
    assert error.field == "mac"
    assert error.detail.startswith("52:54:00:ab:cd:01 already belongs to node node01")
    error = refused(lambda: node_set(env, SetNodes("node02", boot_mode="pxe")))
    assert (error.field, error.detail) == ("boot_mode", "'pxe' is unknown; use netboot or localboot")


def test_standby_add_names_its_dialog_fields(env: Env) -> None:
    error = refused(lambda: standby_add(env, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.300")))
    assert error.field == "local_ip"
    assert error.detail.startswith("'198.18.0.300' is not an IPv4 address; ")
    error = refused(
        lambda: standby_add(
            env, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.9", standby_public_interface="eth0")
        )
    )
    assert (error.field, error.detail) == (
        "standby_public_interface",
        "eth0 is also the private interface; use e.g. eth1",
    )


def test_other_commands_name_their_fields(env: Env) -> None:
    error = refused(lambda: macs.collect(env, macs.CollectMacs(interface="eth0", timeout=0)))
    assert (error.field, error.detail) == ("timeout", "0 must be more than 0 seconds, e.g. 60")
    error = refused(lambda: dhcp.configure(env, dhcp.ConfigureDhcp(port=70000)))
    assert (error.field, error.detail) == ("port", "70000 is out of range; use 1-65535, e.g. 8470")
    error = refused(lambda: dhcp.configure(env, dhcp.ConfigureDhcp(server="nowhere")))
    assert error.field == "server"
    error = refused(lambda: netboot.serve(env, netboot.ServeBoot(binds=[], port=8470)))
    assert (error.field, error.detail) == ("binds", "give at least one address to listen on, e.g. 198.18.0.1")
    error = refused(lambda: netboot.build_installer(env, netboot.BuildInstaller(kernel_package="bash")))
    assert error.field == "kernel_package"
    error = refused(lambda: ha.act(env, ha.HaAction(op="switchover", force=True)))
    assert (error.field, error.detail) == ("force", "only a takeover can be forced, not a switchover")
    error = refused(lambda: lab_link(env, SetLink("head1", "eth0", "sideways")))
    assert (error.field, error.detail) == ("state", "'sideways': say up or down")


def test_several_problems_at_once_each_name_their_field() -> None:
    error = FieldError.several(
        [
            FieldProblem("count", "0: define at least 1 client"),
            FieldProblem("start_ip", "'x' is not an IPv4 address", ": "),
        ],
        "2 problems, nothing was changed",
    )
    assert [(p.field, p.text(str)) for p in error.problems] == [
        ("count", "0: define at least 1 client"),
        ("start_ip", "'x' is not an IPv4 address"),
    ]
    assert str(error).splitlines() == [
        "2 problems, nothing was changed",
        "--count 0: define at least 1 client",
        "--start-ip: 'x' is not an IPv4 address",
    ]
    assert error.render(str.upper) == (
        "2 problems, nothing was changed",
        ["COUNT 0: define at least 1 client", "START_IP: 'x' is not an IPv4 address"],
    )
    assert ref("base_name") in FieldProblem("nodeset", f"pick another {ref('base_name')}", None).detail
