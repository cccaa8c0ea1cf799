"""A lab's hosts: who reaches whom, what a host looks like from inside, and what `down` leaves behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from haoscar.errors import UserError
from haoscar.lab import Lab, LabInterface, down_lab
from haoscar.lab.names import NETNS_DIR
from haoscar.lab.procs import state_of
from haoscar.scenarios.lab_fixtures import MakeLab, pings

pytestmark = pytest.mark.lab


def test_hosts_reach_each_other_on_shared_networks_only(lab: Lab) -> None:
    assert pings(lab, "head1", "198.18.0.101")  # private: head -> compute client
    assert pings(lab, "head1", "198.18.1.2")  # heartbeat: head -> head
    assert pings(lab, "client", "198.19.0.11")  # public: user -> head
    assert pings(lab, "witness", "198.19.0.12") and pings(lab, "witness", "198.18.0.2")
    # The user has no leg on the private network, a compute client none on the public one.
    assert not pings(lab, "client", "198.18.0.1", deadline=1)
    assert not pings(lab, "client", "198.18.0.101", deadline=1)
    assert not pings(lab, "node01", "198.19.0.200", deadline=1)
    assert not pings(lab, "node01", "198.18.1.1", deadline=1)


def test_a_host_is_a_container_with_its_own_name_dirs_and_processes(lab: Lab) -> None:
    assert lab.exec("head1", ["hostname"]).stdout.strip() == "head1"
    lab.exec("head1", ["sh", "-c", "echo primary > /var/lib/haoscar/who && echo x > /etc/haoscar/conf"])
    assert (lab.host_dir("head1") / "var/lib/haoscar/who").read_text() == "primary\n"
    assert (lab.host_dir("head1") / "etc/haoscar/conf").exists()
    assert lab.exec("head2", ["ls", "/var/lib/haoscar"]).stdout == ""  # head2's disk is its own
    ps = lab.exec("node01", ["ps", "-e", "-o", "pid=,comm="]).stdout.split("\n")
    assert ps[0].split()[0] == "1"  # its own PID namespace: only its init and the ps itself
    assert len([line for line in ps if line.strip()]) == 2
    links = lab.exec("witness", ["ip", "-br", "-4", "addr"]).stdout
    assert "eth0" in links and "198.18.0.250/24" in links and "198.19.0.250/24" in links


def test_exec_reports_failures_and_popen_runs_daemons(lab: Lab) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        lab.exec("node02", ["false"])
    assert lab.exec("node02", ["cat"], input="hello").stdout == "hello"
    with pytest.raises(UserError, match=r"no host 'nosuch'.*head1"):
        lab.exec("nosuch", ["true"])
    daemon = lab.popen("node02", ["sleep", "60"])
    assert daemon.pid in lab.host_pids("node02")
    daemon.terminate()
    assert daemon.wait(timeout=5) == -15


def test_added_host_and_tap(lab: Lab) -> None:
    lab.add_host("dhcp1", [LabInterface("eth0", "private", "198.18.0.77", 24, mac="52:54:00:aa:bb:01")])
    mac = lab.exec("dhcp1", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    assert mac == "52:54:00:aa:bb:01"
    assert pings(lab, "dhcp1", "198.18.0.1")
    reopened = Lab.open(lab.name, lab.state_dir)
    assert reopened.hosts["dhcp1"].role == "extra"
    lab.add_tap("private", "tapvm0")
    out = subprocess.run(
        ["ip", "-n", lab.switch_netns, "-o", "link", "show", "tapvm0"], capture_output=True, text=True, check=True
    ).stdout
    assert "master br-private" in out
    assert not os.path.exists("/sys/class/net/tapvm0")  # never in the machine's own namespace


def test_two_labs_at_once_and_down_leaves_nothing(make_lab: MakeLab) -> None:
    first, second = make_lab(), make_lab()
    assert pings(first, "head1", "198.18.0.2") and pings(second, "head1", "198.18.0.2")
    daemon = second.popen("head2", ["sleep", "300"])
    spaces = [h.netns for h in second.hosts.values()] + [second.switch_netns]
    pids = second.host_pids("head2") | second.host_pids("node01")
    second.down()
    assert daemon.wait(timeout=5) == -9
    assert not [s for s in spaces if os.path.exists(f"{NETNS_DIR}/{s}")]
    assert all(state_of(pid) is None for pid in pids)
    assert not second.dir.exists()
    second.down()  # safe twice
    assert down_lab(second.name, second.state_dir) is False
    with pytest.raises(UserError, match=f"no lab '{second.name}'"):
        Lab.open(second.name, second.state_dir)
    assert pings(first, "head1", "198.18.0.2")  # the other lab is untouched
