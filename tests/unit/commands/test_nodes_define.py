"""Client definitions (OSCAR's Define Clients), node set/delete/list and the standby head."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import select

from haoscar.commands.apply import apply_spec
from haoscar.commands.nodes import (
    DefineClients,
    define_clients,
    delete_nodes,
    image_in_use,
    list_nodes,
    set_nodes,
)
from haoscar.commands.standby import StandbyServer, add_standby
from haoscar.db.models import Base, Image, Setting
from haoscar.db.session import Database, open_database
from haoscar.errors import UserError
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the lab spec applied (heads at .1/.2, node01-02 at .101-.102 of 198.18.0.0/24)."""
    state = tmp_path_factory.mktemp("template")
    spec, problems = check_text(LAB, "lab.yaml")
    assert spec is not None, problems
    db = open_database(state)
    apply_spec(db, spec)
    db.close()
    return state


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    shutil.copytree(template, tmp_path / "state")
    database = open_database(tmp_path / "state")
    yield database
    database.close()


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Database]:
    """A database with no spec applied, only an image."""
    database = open_database(tmp_path / "bare")
    with database.session() as session:
        session.add(Image(name="oscarimage"))
    yield database
    database.close()


def dump(db: Database) -> dict[str, list[tuple[object, ...]]]:
    with db.session() as session:
        return {
            name: [tuple(row) for row in session.execute(select(table))] for name, table in Base.metadata.tables.items()
        }


def clients(**fields: object) -> DefineClients:
    values: dict[str, object] = {"image": "oscarimage", "start_ip": "198.18.0.110"} | fields
    return DefineClients(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start_number", "padding", "names"),
    [
        (8, 2, ["node08", "node09", "node10"]),
        (9, 0, ["node9", "node10", "node11"]),
        (1, 3, ["node001", "node002", "node003"]),
        (0, 1, ["node0", "node1", "node2"]),
        (99, 2, ["node99", "node100", "node101"]),
    ],
)
def test_oscar_numbering_and_padding(db: Database, start_number: int, padding: int, names: list[str]) -> None:
    result = define_clients(db, clients(base_name="node", count=3, start_number=start_number, padding=padding))
    assert result.names == names
    rows = list_nodes(db, ",".join(names))
    assert [(r.name, r.ip, r.group, r.image, r.install_state) for r in rows] == [
        (name, f"198.18.0.{110 + i}", "node", "oscarimage", "defined") for i, name in enumerate(names)
    ]


def test_nodeset_names_take_consecutive_addresses(db: Database) -> None:
    result = define_clients(db, clients(nodeset="cn[001-003]", start_ip="198.18.0.200", group="rack1"))
    assert result.nodeset == "cn[001-003]"
    assert [(r.name, r.ip, r.group, r.domain) for r in list_nodes(db, "cn[001-003]")] == [
        ("cn001", "198.18.0.200", "rack1", "lab.haoscar"),
        ("cn002", "198.18.0.201", "rack1", "lab.haoscar"),
        ("cn003", "198.18.0.202", "rack1", "lab.haoscar"),
    ]


def test_range_overflowing_the_subnet_is_refused_and_nothing_is_written(db: Database) -> None:
    before = dump(db)
    with pytest.raises(UserError) as error:
        define_clients(db, clients(base_name="node", count=200, start_ip="198.18.0.200"))
    message = str(error.value)
    assert "past the last usable address 198.18.0.254 of 198.18.0.0/24" in message
    assert "at most 55 fit" in message
    assert dump(db) == before
    # Exactly filling the subnet is fine.
    assert define_clients(db, clients(base_name="c", count=55, start_ip="198.18.0.200")).last_ip == "198.18.0.254"


def test_without_a_spec_the_netmask_defines_the_subnet(bare: Database) -> None:
    with pytest.raises(UserError, match="needs --netmask"):
        define_clients(bare, clients(base_name="n", count=2, start_ip="10.0.0.10"))
    with pytest.raises(UserError, match=r"past the last usable address 198\.18\.0\.6 of 198\.18\.0\.0/29"):
        define_clients(bare, clients(base_name="n", count=4, start_ip="198.18.0.4", netmask="29"))
    result = define_clients(bare, clients(base_name="n", count=3, start_ip="198.18.0.4", netmask="255.255.255.248"))
    assert (result.first_ip, result.last_ip) == ("198.18.0.4", "198.18.0.6")
    assert list_nodes(bare)[0].domain == "cluster.local"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"start_ip": "198.18.5.10"}, "--start-ip 198.18.5.10 is outside the subnet 198.18.0.0/24"),
        ({"start_ip": "198.18.0.0"}, "not a host address of the subnet 198.18.0.0/24"),
        ({"start_ip": "198.18.0.999"}, "--start-ip: '198.18.0.999' is not an IPv4 address"),
        ({"netmask": "255.0.255.0"}, "not a contiguous netmask"),
        ({"netmask": "255.255.0.0"}, "use 255.255.255.0"),
        ({"image": "nosuchimage"}, "unknown image 'nosuchimage'; known images: oscarimage, serverimage"),
        ({"start_ip": "198.18.0.101"}, "addresses already in use: 198.18.0.101 (node01)"),
        ({"base_name": "node", "padding": 2}, "node names already defined: node[01-02]"),
        ({"base_name": "Node"}, "--base-name: 'Node' is not a valid host name"),
        ({"count": 0}, "define at least 1 client"),
        ({"padding": 13}, "use 0 (no padding) to 12 digits"),
        ({"gateway": "198.18.0.111"}, "lies inside the nodes' range"),
        ({"nodeset": "x[1-2"}, "is not a node set"),
        ({"domain": "bad_domain"}, "--domain: 'bad_domain' is not a valid DNS domain"),
    ],
)
def test_bad_definitions_name_the_field_and_change_nothing(
    db: Database, fields: dict[str, object], expected: str
) -> None:
    values: dict[str, object] = {"base_name": "extra", "count": 3} | fields
    if "nodeset" in fields:
        values = {k: v for k, v in values.items() if k not in ("base_name", "count")}
    before = dump(db)
    with pytest.raises(UserError) as error:
        define_clients(db, clients(**values))
    assert expected in str(error.value)
    assert dump(db) == before


def test_set_mac_ip_boot_mode_and_image(db: Database) -> None:
    result = set_nodes(db, "node01", mac="52-54-00-AB-CD-01", ip="198.18.0.150")
    assert result.changed == ["node01"]
    row = list_nodes(db, "node01")[0]
    assert (row.mac, row.ip, row.install_state) == ("52:54:00:ab:cd:01", "198.18.0.150", "mac-assigned")
    again = set_nodes(db, "node[01-02]", boot_mode="localboot", image="serverimage")
    assert again.changed == ["node01", "node02"]
    assert {(r.boot_mode, r.image) for r in list_nodes(db, "node[01-02]")} == {("localboot", "serverimage")}
    assert set_nodes(db, "node[01-02]", boot_mode="localboot").unchanged == ["node01", "node02"]


@pytest.mark.parametrize(
    ("nodeset", "fields", "expected"),
    [
        ("node02", {"mac": "52:54:00:ab:cd:0"}, "--mac: '52:54:00:ab:cd:0' is not a MAC address"),
        ("node02", {"mac": "53:54:00:ab:cd:01"}, "is a multicast MAC address"),
        ("node02", {"mac": "52:54:00:ab:cd:01"}, "--mac 52:54:00:ab:cd:01 already belongs to node node01"),
        ("node02", {"ip": "198.18.0.1"}, "--ip 198.18.0.1 is already used by node head1"),
        ("node02", {"ip": "198.19.0.50"}, "outside the subnet 198.18.0.0/24"),
        ("node[01-02]", {"ip": "198.18.0.50"}, "names 2 nodes"),
        ("node[02-03]", {"boot_mode": "localboot"}, "unknown node node03"),
        ("node02", {"image": "ghost"}, "unknown image 'ghost'"),
        ("node02", {"boot_mode": "pxe"}, "use netboot or localboot"),
        ("node02", {}, "nothing to change"),
    ],
)
def test_bad_node_set_changes_nothing(db: Database, nodeset: str, fields: dict[str, str], expected: str) -> None:
    set_nodes(db, "node01", mac="52:54:00:ab:cd:01")
    before = dump(db)
    with pytest.raises(UserError) as error:
        set_nodes(db, nodeset, **fields)
    assert expected in str(error.value)
    assert dump(db) == before


def test_list_filters_by_nodeset_and_rejects_unknown_names(db: Database) -> None:
    assert [r.name for r in list_nodes(db)] == ["head1", "head2", "node01", "node02"]
    assert [r.name for r in list_nodes(db, "node[01-02],head1")] == ["head1", "node01", "node02"]
    with pytest.raises(UserError, match=r"unknown nodes node\[03-04\]"):
        list_nodes(db, "node[01-04]")


def test_delete_removes_nodes_and_frees_their_addresses(db: Database) -> None:
    define_clients(db, clients(base_name="tmp", count=3))
    assert delete_nodes(db, "tmp[1-3]") == ["tmp1", "tmp2", "tmp3"]
    assert "tmp1" not in {r.name for r in list_nodes(db)}
    define_clients(db, clients(base_name="again", count=3))  # the same addresses are free again
    with pytest.raises(UserError, match="unknown node tmp1"):
        delete_nodes(db, "tmp1")


def test_standby_add_defines_the_standby_head(bare: Database) -> None:
    with bare.session() as session:
        session.add(Image(name="serverimage"))
    row = add_standby(
        bare,
        StandbyServer(
            alias_ip="198.19.0.10",
            local_ip="198.18.0.2",
            netmask="255.255.255.0",
            gateway="198.18.0.254",
            hostname="head2",
            public_ip="198.19.0.12",
        ),
    )
    assert (row.name, row.role, row.image, row.ip, row.interface) == (
        "head2",
        "standby",
        "serverimage",
        "198.18.0.2",
        "eth0",
    )
    with bare.session() as session:
        dialog = session.get(Setting, "standby_server")
        assert dialog is not None
        assert dialog.value["alias_ip"] == "198.19.0.10"
        assert dialog.value["primary_public_interface"] == "eth1"
    with pytest.raises(UserError, match="already defined as head2"):
        add_standby(bare, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.3", netmask="24"))
    assert image_in_use(bare.state_dir, "serverimage") == ["head2"]
    assert image_in_use(bare.state_dir, "oscarimage") == []


def test_standby_add_checks_the_spec_networks(db: Database) -> None:
    delete_nodes(db, "head2")
    before = dump(db)
    with pytest.raises(UserError, match=r"--alias-ip 198\.20\.0\.10 is outside the subnet 198\.19\.0\.0/24"):
        add_standby(db, StandbyServer(alias_ip="198.20.0.10", local_ip="198.18.0.2"))
    with pytest.raises(UserError, match=r"--local-ip 198\.18\.0\.101 is already used by node node01"):
        add_standby(db, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.101"))
    assert dump(db) == before
    assert add_standby(db, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.2")).role == "standby"


def test_definitions_from_two_processes_at_once_both_land(db: Database) -> None:
    """Two `node add` side by side: the second waits for the first's write lock instead of failing."""
    errors: list[BaseException] = []

    def add(base: str, start: str) -> None:
        other = open_database(db.state_dir)
        try:
            define_clients(other, clients(base_name=base, count=40, start_ip=start))
        except BaseException as exc:
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=add, args=args) for args in (("a", "198.18.0.110"), ("b", "198.18.0.160"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(list_nodes(db)) == 4 + 80


def test_images_of_the_image_store_can_be_named(bare: Database, tmp_path: Path) -> None:
    from haoscar.provision.images import ImageStore

    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("golden\n")
    ImageStore(bare.state_dir).import_tree("storeimage", tree, post_install="beep")
    result = define_clients(bare, clients(image="storeimage", base_name="s", count=2, netmask="24"))
    assert result.image == "storeimage"
    with bare.session() as session:
        image = session.scalar(select(Image).where(Image.name == "storeimage"))
        assert image is not None and (image.post_install, image.from_spec) == ("beep", False)
    assert image_in_use(bare.state_dir, "storeimage") == ["s1", "s2"]
