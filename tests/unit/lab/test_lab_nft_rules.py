"""Partition and loss become nftables rules in the lab's own table (rendered text; applied for real in tests/lab)."""

from __future__ import annotations

from haoscar.lab.defaults import default_spec
from haoscar.lab.faults import host_rules, render
from haoscar.lab.layout import LabLayout, Partition, layout_from_spec


def _layout() -> LabLayout:
    layout = layout_from_spec(default_spec(), "lab")
    for host in layout.hosts.values():  # MACs are read from the kernel at up; give fixed ones here
        for n, iface in enumerate(host.interfaces):
            iface.mac = f"52:54:00:00:{host.index:02x}:{n:02x}"
    return layout


def test_a_partition_on_one_network_blocks_only_the_peer_there() -> None:
    layout = _layout()
    layout.partitions.append(Partition("head1", "head2", "public"))
    rules = host_rules(layout, "head1")
    assert list(rules) == ["eth1"]
    assert rules["eth1"].blocked_macs == {"52:54:00:00:01:01"}  # head2's public NIC
    assert host_rules(layout, "head2")["eth1"].blocked_macs == {"52:54:00:00:00:01"}
    assert host_rules(layout, "client") == {}


def test_a_partition_on_every_network_covers_each_shared_one() -> None:
    layout = _layout()
    layout.partitions.append(Partition("head1", "witness"))
    assert sorted(host_rules(layout, "head1")) == ["eth0", "eth1"]  # witness has no heartbeat leg


def test_render_replaces_only_the_lab_table() -> None:
    layout = _layout()
    layout.partitions.append(Partition("head1", "head2", "public"))
    layout.losses["head1"] = {"eth0": 30}
    script = render(host_rules(layout, "head1"))
    assert script.startswith("table netdev haoscar_lab\ndelete table netdev haoscar_lab\n")
    assert 'type filter hook ingress device "eth1"' in script
    assert "ether saddr { 52:54:00:00:01:01 } drop" in script
    assert "ether daddr { 52:54:00:00:01:01 } drop" in script
    assert "numgen random mod 100 < 30 drop" in script
    assert render({}) == "table netdev haoscar_lab\ndelete table netdev haoscar_lab\n"  # heal: table gone


def test_full_loss_drops_everything() -> None:
    layout = _layout()
    layout.losses["node01"] = {"eth0": 100}
    script = render(host_rules(layout, "node01"))
    assert "    drop\n" in script and "numgen" not in script
