"""A valid spec that uses every key of the cluster.yaml reference, and helpers to break it one line at a time."""

from __future__ import annotations

from haoscar.spec import Problem, check_text

BASE = """\
cluster:
  name: labcluster
  domain: lab.haoscar
networks:
  private:
    subnet: 198.18.0.0/24
  public:
    subnet: 198.19.0.0/24
    gateway: 198.19.0.1
  heartbeat:
    subnet: 198.18.1.0/24
heads:
  primary:
    hostname: head1
    private_interface: eth0
    private_ip: 198.18.0.1
    private_mac: 52:54:00:aa:00:01
    public_interface: eth1
    public_ip: 198.19.0.11
    alias_ip: 198.19.0.10
    netmask: 255.255.255.0
    gateway: 198.19.0.1
    heartbeat_interface: eth2
    heartbeat_ip: 198.18.1.1
    image: serverimage
  standby:
    hostname: head2
    private_interface: eth0
    private_ip: 198.18.0.2
    private_mac: 52:54:00:aa:00:02
    public_interface: eth1
    public_ip: 198.19.0.12
    alias_ip: 198.19.0.10
    netmask: 255.255.255.0
    gateway: 198.19.0.1
    heartbeat_interface: eth2
    heartbeat_ip: 198.18.1.2
    image: serverimage
images:
  - name: serverimage
    source: golden-client:head1
    ip_assignment: static
    post_install: beep
  - name: oscarimage
clients:
  - name: compute
    image: oscarimage
    base_name: node
    count: 4
    start_number: 1
    padding: 2
    start_ip: 198.18.0.100
    netmask: 255.255.255.0
    gateway: 198.18.0.1
    macs:
      node01: 52:54:00:bb:00:01
  - name: gpu
    image: oscarimage
    nodeset: gpu[1-2]
    start_ip: 198.18.0.253
    netmask: 255.255.255.0
ha:
  heartbeat_interval: 0.2
  dead_time: 0.6
  failback: manual
  witness:
    hostname: witness
    addresses: [198.18.0.3]
lab:
  client:
    hostname: client
    ip: 198.19.0.200
"""


def edit(text: str, *changes: tuple[str, str]) -> str:
    """``text`` with each ``old`` (which must occur exactly once, so a test cannot edit the wrong line) replaced."""
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the spec"
        text = text.replace(old, new)
    return text


def line_of(text: str, needle: str) -> int:
    """The 1-based line on which ``needle`` (unique) starts."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times in the spec"
    return text[: text.index(needle)].count("\n") + 1


def problems(text: str, filename: str = "cluster.yaml") -> list[str]:
    spec, found = check_text(text, filename)
    assert (spec is None) == bool(found)
    return [problem.render(filename) for problem in found]


def problem_list(text: str) -> list[Problem]:
    return check_text(text)[1]
