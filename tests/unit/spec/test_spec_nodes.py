# ruff: noqa: E501
# (tables of one-line spec edits read best unwrapped)
"""Expanding a spec into nodes: OSCAR's Define Clients naming and addressing, and ClusterShell node sets."""

from __future__ import annotations

import ipaddress

import pytest
from spec_cases import BASE, edit

from haoscar.errors import UserError
from haoscar.spec import all_nodes, check_text
from haoscar.spec.nodes import expand_nodeset, oscar_names


@pytest.mark.parametrize(
    ("base_name", "count", "start", "padding", "expected"),
    [
        ("oscarnode", 3, 1, 0, ["oscarnode1", "oscarnode2", "oscarnode3"]),
        ("node", 3, 0, 3, ["node000", "node001", "node002"]),
        ("n", 2, 9, 2, ["n09", "n10"]),
        ("node", 3, 99, 2, ["node99", "node100", "node101"]),  # wider numbers keep their digits
        ("compute-", 1, 7, 0, ["compute-7"]),
    ],
)
def test_oscar_names(base_name: str, count: int, start: int, padding: int, expected: list[str]) -> None:
    assert oscar_names(base_name, count, start, padding) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("node[1-3,7]", ["node1", "node2", "node3", "node7"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("node[08-11]", ["node08", "node09", "node10", "node11"]),
        ("login,node[1-2]", ["login", "node1", "node2"]),
    ],
)
def test_expand_nodeset(pattern: str, expected: list[str]) -> None:
    assert expand_nodeset(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "phrase"),
    [
        ("node[1-3", "is not a node set"),
        ("node[3-1]", "is not a node set"),
        ("", "is empty"),
        ("@compute", "names a node group"),
        ("node[1-100000]", "has 100000 nodes; a group holds at most 65536"),
    ],
)
def test_bad_nodeset_is_a_user_error(pattern: str, phrase: str) -> None:
    with pytest.raises(UserError, match=r"e\.g\. node|split it") as caught:
        expand_nodeset(pattern)
    assert phrase in caught.value.message


def _spec(*changes: tuple[str, str]):  # type: ignore[no-untyped-def]
    spec, found = check_text(edit(BASE, *changes))
    assert found == [], found
    assert spec is not None
    return spec


def test_all_nodes_heads_first_then_clients_with_consecutive_addresses() -> None:
    nodes = all_nodes(_spec())
    assert [(n.name, n.role) for n in nodes[:2]] == [("head1", "primary"), ("head2", "standby")]
    clients = [(n.name, str(n.interfaces[0].ip), n.group) for n in nodes[2:]]
    assert clients == [
        ("node01", "198.18.0.100", "compute"),
        ("node02", "198.18.0.101", "compute"),
        ("node03", "198.18.0.102", "compute"),
        ("node04", "198.18.0.103", "compute"),
        ("gpu1", "198.18.0.253", "gpu"),
        ("gpu2", "198.18.0.254", "gpu"),
    ]
    head1 = nodes[0]
    assert [(i.name, i.network, str(i.ip), i.prefix) for i in head1.interfaces] == [
        ("eth0", "private", "198.18.0.1", 24),
        ("eth1", "public", "198.19.0.11", 24),
        ("eth2", "heartbeat", "198.18.1.1", 24),
    ]
    assert head1.interface_on("private") is not None and head1.interface_on("private").mac == "52:54:00:aa:00:01"  # type: ignore[union-attr]
    assert nodes[2].interfaces[0].mac == "52:54:00:bb:00:01" and nodes[3].interfaces[0].mac is None
    assert nodes[2].fqdn == "node01.lab.haoscar"


def test_start_number_padding_and_a_range_across_an_octet_boundary() -> None:
    """OSCAR's start IP increments by one per client, carrying into the next octet (.250 -> 1.5) in a /16."""
    spec = _spec(
        ("    subnet: 198.18.0.0/24\n", "    subnet: 198.18.0.0/16\n"),
        ("    subnet: 198.18.1.0/24", "    subnet: 198.19.128.0/24"),
        ("198.18.1.1", "198.19.128.1"),
        ("198.18.1.2", "198.19.128.2"),
        ("    subnet: 198.19.0.0/24", "    subnet: 198.19.0.0/24"),
        (
            "    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.19.128.1",
            "    netmask: 16\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.19.128.1",
        ),
        (
            "    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.19.128.2",
            "    netmask: 16\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.19.128.2",
        ),
        (
            "    count: 4\n    start_number: 1\n    padding: 2\n    start_ip: 198.18.0.100\n    netmask: 255.255.255.0",
            "    count: 12\n    start_number: 7\n    padding: 4\n    start_ip: 198.18.0.250\n    netmask: 16",
        ),
        ("node01:", "node0007:"),
        (
            "    start_ip: 198.18.0.253\n    netmask: 255.255.255.0",
            "    start_ip: 198.18.255.253\n    netmask: 255.255.0.0",
        ),
    )
    compute = [n for n in all_nodes(spec) if n.group == "compute"]
    assert [n.name for n in compute] == [f"node{i:04d}" for i in range(7, 19)]
    assert [n.interfaces[0].ip for n in compute] == [ipaddress.IPv4Address("198.18.0.250") + i for i in range(12)]
    assert str(compute[-1].interfaces[0].ip) == "198.18.1.5"
    assert compute[0].interfaces[0].prefix == 16


def test_nodeset_group_takes_addresses_in_sorted_order() -> None:
    spec = _spec(("gpu[1-2]", "rack[1-2]-n[1,3]"), ("198.18.0.253", "198.18.0.200"))
    gpus = [(n.name, str(n.interfaces[0].ip)) for n in all_nodes(spec) if n.group == "gpu"]
    assert gpus == [
        ("rack1-n1", "198.18.0.200"),
        ("rack1-n3", "198.18.0.201"),
        ("rack2-n1", "198.18.0.202"),
        ("rack2-n3", "198.18.0.203"),
    ]
