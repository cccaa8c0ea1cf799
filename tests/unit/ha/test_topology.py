"""One resolved "my head / my peer / my links" model, shared by the HA daemon and replication."""

from __future__ import annotations

from importlib.resources import files
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.ha.config import node_config
from haoscar.replication.config import repl_config
from haoscar.spec import check_text
from haoscar.spec.models import ClusterSpec
from haoscar.spec.topology import Link, topology

LAB = (files("haoscar") / "data" / "lab.yaml").read_text()


def lab_spec(text: str = LAB) -> ClusterSpec:
    spec, problems = check_text(text)
    assert spec is not None and not problems, problems
    return spec


def test_the_primary_sees_the_standby_as_its_peer_on_every_shared_network() -> None:
    topo = topology(lab_spec(), "head1")
    assert (topo.name, topo.role, topo.peer_name, topo.is_primary) == ("head1", "primary", "head2", True)
    assert [link.network for link in topo.links] == ["private", "public", "heartbeat"]
    assert topo.links[0] == Link("private", IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"))
    assert topo.replication_link == Link("heartbeat", IPv4Address("198.18.1.1"), IPv4Address("198.18.1.2"))


def test_the_standby_sees_the_same_links_from_the_other_end() -> None:
    spec = lab_spec()
    primary, standby = topology(spec, "primary"), topology(spec, "head2")
    assert (standby.name, standby.role, standby.peer_name, standby.is_primary) == ("head2", "standby", "head1", False)
    assert [(link.network, link.local, link.peer) for link in standby.links] == [
        (link.network, link.peer, link.local) for link in primary.links
    ]
    assert topology(spec, "standby") == standby


def test_without_a_heartbeat_network_replication_takes_the_private_one() -> None:
    raw = LAB.split("\n")
    start = raw.index("  heartbeat:                    # a dedicated link between the heads, a third heartbeat path")
    kept = [line for line in raw[:start] + raw[start + 2 :] if "heartbeat_ip:" not in line]
    spec = lab_spec("\n".join(kept))
    topo = topology(spec, "head2")
    assert [link.network for link in topo.links] == ["private", "public"]
    assert topo.replication_link == Link("private", IPv4Address("198.18.0.2"), IPv4Address("198.18.0.1"))


def test_ha_and_replication_agree_on_the_peer(tmp_path: Path) -> None:
    spec = lab_spec()
    for node in ("head1", "head2"):
        ha, repl = node_config(spec, node), repl_config(spec, node, tmp_path)
        assert (ha.name, ha.peer_name) == (repl.node, repl.peer)
        link = ha.topology.replication_link
        assert (link.local, link.peer) == (repl.local_ip, repl.peer_ip)


def test_a_node_that_is_not_a_head_is_refused_naming_both_heads() -> None:
    with pytest.raises(UserError, match=r"'node01' is not a head of this cluster; use head1 \(primary\) or head2"):
        topology(lab_spec(), "node01")
