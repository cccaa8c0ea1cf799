"""Fault injection: each fault does what it says, seen the way a user would see it (pings, process states)."""

from __future__ import annotations

import pytest

from haoscar.errors import UserError
from haoscar.lab import Lab
from haoscar.lab.procs import state_of
from haoscar.scenarios.lab_fixtures import pings

pytestmark = pytest.mark.lab

HEAD1_PRIVATE, HEAD2_PRIVATE, HEAD2_PUBLIC, NODE01 = "198.18.0.1", "198.18.0.2", "198.19.0.12", "198.18.0.101"


def test_crash_is_a_power_loss_and_restore_a_boot(lab: Lab) -> None:
    lab.exec("head2", ["ip", "addr", "add", "198.19.0.10/24", "dev", "eth1"])  # an alias IP a daemon added
    lab.exec("head2", ["sh", "-c", "echo disk > /var/lib/haoscar/kept && echo tmp > /run/gone"])
    daemon = lab.popen("head2", ["sleep", "300"])
    pids = lab.host_pids("head2")
    assert pings(lab, "client", "198.19.0.10")

    lab.crash("head2")
    assert daemon.wait(timeout=5) == -9
    assert all(state_of(pid) is None for pid in pids)
    assert not pings(lab, "client", HEAD2_PUBLIC, deadline=1)
    with pytest.raises(UserError, match=r"head2 .* is down"):
        lab.exec("head2", ["true"])
    assert lab.status().hosts[1].state == "crashed"

    lab.restore("head2")
    assert pings(lab, "client", HEAD2_PUBLIC)
    assert not pings(lab, "client", "198.19.0.10", deadline=1)  # the run-time alias is gone after the boot
    assert lab.exec("head2", ["cat", "/var/lib/haoscar/kept"]).stdout == "disk\n"
    assert lab.exec("head2", ["ls", "/run"]).stdout == ""
    assert lab.exec("head2", ["hostname"]).stdout.strip() == "head2"


def test_link_down_and_up(lab: Lab) -> None:
    lab.link("head1", "eth0", up=False)
    assert not pings(lab, "head1", NODE01, deadline=1)
    assert pings(lab, "head1", HEAD2_PUBLIC)  # its other links still work
    lab.link("head1", "eth0", up=True)
    assert pings(lab, "head1", NODE01)
    with pytest.raises(UserError, match="no interface 'eth9'; its interfaces are: eth0, eth1, eth2"):
        lab.link("head1", "eth9", up=False)


def test_partition_and_heal(lab: Lab) -> None:
    lab.partition("head1", "head2", network="public")
    assert not pings(lab, "head1", HEAD2_PUBLIC, deadline=1)
    assert not pings(lab, "head2", "198.19.0.11", deadline=1)
    assert pings(lab, "head1", HEAD2_PRIVATE)  # only the public network is cut
    assert pings(lab, "client", HEAD2_PUBLIC)  # and only between those two hosts
    lab.partition("head1", "head2")
    assert not pings(lab, "head1", HEAD2_PRIVATE, deadline=1)
    lab.heal()
    assert pings(lab, "head1", HEAD2_PUBLIC) and pings(lab, "head1", HEAD2_PRIVATE)
    with pytest.raises(UserError, match="do not share network public"):
        lab.partition("head1", "node01", network="public")


def test_freeze_and_thaw(lab: Lab) -> None:
    daemon = lab.popen("node01", ["sh", "-c", "while :; do sleep 0.05 & wait; done"])  # keeps forking
    lab.freeze("node01")
    pids = lab.host_pids("node01")
    assert daemon.pid in pids
    assert {state_of(pid) for pid in pids} == {"T"}
    assert pings(lab, "head1", NODE01)  # the kernel still answers: only the processes stop
    with pytest.raises(UserError, match="frozen"):
        lab.exec("node01", ["true"])
    lab.thaw("node01")
    assert state_of(daemon.pid) in {"S", "R"}
    assert lab.exec("node01", ["true"]).returncode == 0

    lab.freeze("node01", links=True)  # a paused VM: it also falls off the network
    assert {state_of(pid) for pid in lab.host_pids("node01")} == {"T"}
    assert not pings(lab, "head1", NODE01, deadline=1)
    lab.thaw("node01")
    assert pings(lab, "head1", NODE01)
    daemon.kill()


def test_loss(lab: Lab) -> None:
    lab.loss("head1", "eth0", 100)
    assert not pings(lab, "head1", NODE01, deadline=1)
    assert not pings(lab, "node01", HEAD1_PRIVATE, deadline=1)
    # Back: the first reply ends the wait; the long deadline covers the neighbour entry's re-resolution after its
    # probes failed under the loss (once seen to take more than 3 s in a full run).
    lab.loss("head1", "eth0", 0)
    assert pings(lab, "head1", NODE01, deadline=10)
    lab.loss("head1", "eth0", 100)
    lab.heal()
    assert pings(lab, "head1", NODE01, deadline=10)
    with pytest.raises(UserError, match="0-100"):
        lab.loss("head1", "eth0", 101)
