"""The lab's layout from a spec: which hosts, roles, interfaces and addresses a user gets (no root needed)."""

from __future__ import annotations

import ipaddress

import pytest

from haoscar.errors import UserError
from haoscar.lab.defaults import default_spec
from haoscar.lab.layout import LabInterface, LabLayout, layout_from_spec
from haoscar.lab.names import check_lab_name, host_netns, switch_netns
from haoscar.scenarios.bench.lab import synthetic_spec


def test_default_spec_gives_heads_clients_witness_and_user() -> None:
    layout = layout_from_spec(default_spec(), "lab")
    roles = {name: host.role for name, host in layout.hosts.items()}
    assert roles == {
        "head1": "primary", "head2": "standby", "node01": "compute", "node02": "compute",
        "witness": "witness", "client": "client",
    }  # fmt: skip
    head1 = layout.host("head1")
    assert [(i.name, i.network, i.cidr) for i in head1.interfaces] == [
        ("eth0", "private", "198.18.0.1/24"),
        ("eth1", "public", "198.19.0.11/24"),
        ("eth2", "heartbeat", "198.18.1.1/24"),
    ]
    witness = layout.host("witness")
    assert [(i.name, i.network, i.ip) for i in witness.interfaces] == [
        ("eth0", "private", "198.18.0.250"),
        ("eth1", "public", "198.19.0.250"),
    ]
    assert [(i.name, i.network) for i in layout.host("client").interfaces] == [("eth0", "public")]
    assert layout.networks == {"private": "198.18.0.0/24", "public": "198.19.0.0/24", "heartbeat": "198.18.1.0/24"}


def test_names_keep_labs_apart_and_fit_the_kernel() -> None:
    layout = layout_from_spec(synthetic_spec(50), "a-b")
    ports = [i.port for h in layout.hosts.values() for i in h.interfaces]
    assert len(ports) == len(set(ports)) and all(len(p) <= 15 for p in ports)
    assert len(layout.hosts) == 50
    # lab "a" must never mistake lab "a-b"'s namespaces for its own
    assert not host_netns("a-b", "head1").startswith(host_netns("a", ""))
    assert switch_netns("lab") not in {h.netns for h in layout_from_spec(default_spec(), "lab").hosts.values()}


@pytest.mark.parametrize("name", ["", "Lab", "a_b", "-x", "x-", "waytoolongname"])
def test_bad_lab_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(UserError, match="lower-case letters, digits and '-'"):
        check_lab_name(name)


def test_layout_survives_a_json_round_trip_and_knows_its_hosts() -> None:
    layout = layout_from_spec(default_spec(), "lab")
    layout.new_host("pxe1", "extra", [LabInterface("eth0", "private", mac="52:54:00:00:00:01")])
    again = LabLayout.from_json(layout.to_json())
    assert again == layout
    with pytest.raises(UserError, match="no host 'head3'; its hosts are: head1, head2"):
        again.host("head3")
    with pytest.raises(UserError, match="no interface 'eth5'; its interfaces are: eth0"):
        again.host("pxe1").interface("eth5")
    with pytest.raises(UserError, match="already has a host 'pxe1'"):
        again.new_host("pxe1", "extra", [])
    with pytest.raises(UserError, match="no network 'storage'"):
        again.new_host("nas", "extra", [LabInterface("eth0", "storage")])


def test_a_witness_address_outside_every_network_is_a_user_error() -> None:
    spec = default_spec()
    assert spec.ha.witness is not None
    bad = spec.model_copy(
        update={
            "ha": spec.ha.model_copy(
                update={
                    "witness": spec.ha.witness.model_copy(update={"addresses": [ipaddress.IPv4Address("198.18.9.9")]})
                }
            )
        }
    )
    with pytest.raises(UserError, match=r"witness address 198\.18\.9\.9 is in none of the spec's networks"):
        layout_from_spec(bad, "lab")
