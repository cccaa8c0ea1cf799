# ruff: noqa: E501
# (tables of one-line spec edits read best unwrapped)
"""One good and one bad case for every validation rule of cluster.yaml.

Each bad case breaks the valid spec of spec_cases.py in one place and asserts the exact ``FILE:LINE: path: `` prefix
a user would see, plus the phrase that tells them what would be right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from spec_cases import BASE, edit, line_of, problems


@dataclass(frozen=True)
class Bad:
    id: str
    changes: tuple[tuple[str, str], ...]
    path: str
    at: str  # a unique text of the edited spec on whose line the problem is reported
    phrase: str
    count: int = 1  # how many problems the edit causes in all (most cause exactly one)
    also: tuple[str, ...] = field(default=())


def one(old: str, new: str) -> tuple[tuple[str, str], ...]:
    return ((old, new),)


BAD = [
    # unknown keys (typos), with a suggestion
    Bad("unknown-key", one("  domain: lab", "  domian: lab"), "cluster.domian", "domian:", "did you mean 'domain'?"),
    Bad(
        "unknown-key-nested",
        one("    base_name: node", "    basename: node"),
        "clients[0].basename",
        "basename:",
        "did you mean 'base_name'?",
    ),
    Bad("unknown-key-no-match", one("lab:\n", "lab:\n  zzz: 1\n"), "lab.zzz", "zzz:", "known keys: client"),
    # missing keys point at the parent key
    Bad(
        "missing-field",
        one("    public_ip: 198.19.0.12\n", ""),
        "heads.standby.public_ip",
        "  standby:",
        "required; add 'public_ip'",
    ),
    Bad(
        "missing-section",
        one("cluster:\n  name: labcluster\n  domain: lab.haoscar\n", ""),
        "cluster",
        "networks:",
        "required; add 'cluster'",
    ),
    # wrong YAML types name the expected form
    Bad(
        "list-for-mapping",
        one("  private:\n    subnet: 198.18.0.0/24\n", "  private: [198.18.0.0/24]\n"),
        "networks.private",
        "private: [",
        "expected a mapping",
    ),
    Bad(
        "string-for-count",
        one("    count: 4", "    count: four"),
        "clients[0].count",
        "count: four",
        "expected a whole number such as 8, got 'four'",
    ),
    Bad("zero-count", one("    count: 4", "    count: 0"), "clients[0].count", "count: 0", "use a value at least 1"),
    Bad(
        "string-for-list",
        one(
            "images:\n  - name: serverimage\n    source: golden-client:head1\n    ip_assignment: static\n    post_install: beep\n  - name: oscarimage\n",
            "images: serverimage\n",
        ),
        "images",
        "images:",
        "expected a list",
    ),
    Bad(
        "bool-for-name",
        one("    hostname: head1", "    hostname: true"),
        "heads.primary.hostname",
        "hostname: true",
        "got true",
    ),
    Bad("float-with-unit", one("  dead_time: 0.6", "  dead_time: 6s"), "ha.dead_time", "dead_time:", "no unit"),
    Bad(
        "not-a-choice",
        one("    post_install: beep", "    post_install: explode"),
        "images[0].post_install",
        "post_install:",
        "use 'beep', 'reboot' or 'shutdown'",
    ),
    # host names and domains
    Bad(
        "hostname",
        one("    hostname: head2", "    hostname: Head_2"),
        "heads.standby.hostname",
        "Head_2",
        "it would be 'head-2'",
    ),
    Bad(
        "domain",
        one("  domain: lab.haoscar", "  domain: lab_haoscar"),
        "cluster.domain",
        "domain:",
        "e.g. cluster.example.org",
    ),
    # IP, subnet, netmask and MAC syntax
    Bad(
        "ip-syntax",
        one("198.19.0.12", "198.19.0.312"),
        "heads.standby.public_ip",
        "198.19.0.312",
        "is not an IPv4 address",
    ),
    Bad(
        "subnet-no-prefix",
        one("    subnet: 198.19.0.0/24", "    subnet: 198.19.0.0"),
        "networks.public.subnet",
        "198.19.0.0\n",
        "e.g. 198.19.0.0/24",
    ),
    Bad(
        "subnet-host-bits",
        one("    subnet: 198.19.0.0/24", "    subnet: 198.19.0.5/24"),
        "networks.public.subnet",
        "198.19.0.5/24",
        "would be 198.19.0.0/24",
    ),
    Bad(
        "netmask-not-contiguous",
        one(
            "    public_ip: 198.19.0.12\n    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0",
            "    public_ip: 198.19.0.12\n    alias_ip: 198.19.0.10\n    netmask: 255.0.255.0",
        ),
        "heads.standby.netmask",
        "255.0.255.0",
        "not a contiguous netmask",
    ),
    Bad(
        "netmask-prefix-out-of-range",
        one("    start_ip: 198.18.0.100\n    netmask: 255.255.255.0", "    start_ip: 198.18.0.100\n    netmask: 33"),
        "clients[0].netmask",
        "netmask: 33",
        "use 0-32",
    ),
    Bad(
        "netmask-other-subnet",
        one("    start_ip: 198.18.0.100\n    netmask: 255.255.255.0", "    start_ip: 198.18.0.100\n    netmask: 16"),
        "clients[0].netmask",
        "netmask: 16",
        "it would be 255.255.255.0",
    ),
    Bad(
        "mac-syntax",
        one("52:54:00:aa:00:02", "52:54:00:aa:00"),
        "heads.standby.private_mac",
        "52:54:00:aa:00\n",
        "six hex pairs",
    ),
    Bad(
        "mac-multicast",
        one("52:54:00:aa:00:02", "01:00:5e:00:00:02"),
        "heads.standby.private_mac",
        "01:00:5e",
        "multicast",
    ),
    # impossible interface names
    Bad(
        "ifname-too-long",
        one(
            "    public_interface: eth1\n    public_ip: 198.19.0.11",
            "    public_interface: enp0s31f6-uplink0\n    public_ip: 198.19.0.11",
        ),
        "heads.primary.public_interface",
        "enp0s31f6-uplink0",
        "1-15 characters",
    ),
    Bad(
        "ifname-colon",
        one(
            "    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
            "    heartbeat_interface: eth2:1\n    heartbeat_ip: 198.18.1.2",
        ),
        "heads.standby.heartbeat_interface",
        "eth2:1",
        "no '/', ':' or spaces",
    ),
    Bad(
        "ifname-twice",
        one(
            "    public_interface: eth1\n    public_ip: 198.19.0.11",
            "    public_interface: eth0\n    public_ip: 198.19.0.11",
        ),
        "heads.primary.public_interface",
        "public_interface: eth0",
        "already the private interface",
    ),
    # addresses outside their subnet
    Bad(
        "private-ip-outside",
        one("198.18.0.2\n", "198.18.5.2\n"),
        "heads.standby.private_ip",
        "198.18.5.2",
        "outside the private subnet 198.18.0.0/24",
    ),
    Bad(
        "public-ip-broadcast",
        one("198.19.0.12", "198.19.0.255"),
        "heads.standby.public_ip",
        "198.19.0.255",
        "is the broadcast address",
    ),
    Bad(
        "heartbeat-ip-outside",
        one("198.18.1.2", "198.18.2.2"),
        "heads.standby.heartbeat_ip",
        "198.18.2.2",
        "outside the heartbeat subnet",
    ),
    Bad(
        "lab-client-outside",
        one("198.19.0.200", "198.18.0.200"),
        "lab.client.ip",
        "198.18.0.200",
        "outside the public subnet",
    ),
    Bad(
        "witness-unreachable",
        one("[198.18.0.3]", "[10.1.2.3]"),
        "ha.witness.addresses[0]",
        "10.1.2.3",
        "none of the cluster's networks",
    ),
    # the alias IP
    Bad(
        "alias-outside-public",
        one(
            "    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
            "    alias_ip: 198.20.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
        ),
        "heads.primary.alias_ip",
        "198.20.0.10",
        "outside the public subnet 198.19.0.0/24",
        count=2,  # and the standby's alias now differs
    ),
    Bad(
        "alias-differs",
        one(
            "    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
            "    alias_ip: 198.19.0.9\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
        ),
        "heads.standby.alias_ip",
        "198.19.0.9",
        "both heads name the same one",
    ),
    Bad(
        "alias-is-a-host",
        (
            (
                "    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
                "    alias_ip: 198.19.0.200\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
            ),
            ("    alias_ip: 198.19.0.10\n", "    alias_ip: 198.19.0.200\n"),
        ),
        "heads.primary.alias_ip",
        "alias_ip: 198.19.0.200\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
        "is also the address of lab.client (client)",
    ),
    Bad(
        "alias-is-the-gateway",
        (
            (
                "    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
                "    alias_ip: 198.19.0.1\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
            ),
            ("    alias_ip: 198.19.0.10\n", "    alias_ip: 198.19.0.1\n"),
        ),
        "heads.primary.alias_ip",
        "alias_ip: 198.19.0.1\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1",
        "the public network's gateway",
    ),
    # gateways inside their subnet
    Bad(
        "network-gateway-outside",
        one("    gateway: 198.19.0.1\n  heartbeat:", "    gateway: 198.20.0.1\n  heartbeat:"),
        "networks.public.gateway",
        "198.20.0.1",
        "outside the public subnet",
    ),
    Bad(
        "head-gateway-elsewhere",
        one(
            "    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
            "    gateway: 10.0.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
        ),
        "heads.standby.gateway",
        "10.0.0.1",
        "neither the private subnet",
    ),
    Bad(
        "client-gateway-outside",
        one("    gateway: 198.18.0.1\n", "    gateway: 198.19.0.1\n"),
        "clients[0].gateway",
        "    gateway: 198.19.0.1\n    macs",
        "outside the private subnet",
    ),
    # networks
    Bad(
        "networks-overlap",
        (
            ("    subnet: 198.18.1.0/24", "    subnet: 198.18.0.128/25"),
            ("198.18.1.1", "198.18.0.201"),
            ("198.18.1.2", "198.18.0.202"),
        ),
        "networks.heartbeat.subnet",
        "198.18.0.128/25",
        "overlaps the private subnet 198.18.0.0/24",
    ),
    Bad(
        "heartbeat-ip-without-network",
        one("  heartbeat:\n    subnet: 198.18.1.0/24\n", ""),
        "heads.primary.heartbeat_ip",
        "198.18.1.1",
        "needs networks.heartbeat",
        count=2,
    ),
    Bad(
        "heartbeat-network-without-ip",
        one("    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2\n", ""),
        "heads.standby",
        "  standby:",
        "needs a heartbeat_ip in 198.18.1.0/24",
    ),
    # duplicates across all nodes
    Bad(
        "duplicate-hostname-heads",
        one("    hostname: head2", "    hostname: head1"),
        "heads.standby.hostname",
        "hostname: head1\n    private_interface: eth0\n    private_ip: 198.18.0.2",
        "host name 'head1' is already used by heads.primary",
    ),
    Bad(
        "duplicate-hostname-client",
        one("gpu[1-2]", "head[1-2]"),
        "clients[1].nodeset",
        "head[1-2]",
        "host name 'head1' is already used by heads.primary (and 1 more like it)",
    ),
    Bad(
        "duplicate-ip-heads",
        one("198.19.0.12", "198.19.0.11"),
        "heads.standby.public_ip",
        "public_ip: 198.19.0.11\n    alias_ip: 198.19.0.10\n    netmask: 255.255.255.0\n    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
        "already used by heads.primary (head1)",
    ),
    Bad(
        "duplicate-ip-groups",
        one("198.18.0.253", "198.18.0.102"),
        "clients[1].start_ip",
        "198.18.0.102",
        "198.18.0.102 of gpu1 is already used by clients[0] (node03) (and 1 more like it)",
    ),
    Bad(
        "duplicate-ip-witness",
        one("[198.18.0.3]", "[198.18.0.101]"),
        "ha.witness.addresses[0]",
        "198.18.0.101",
        "already used by clients[0] (node02)",
    ),
    Bad(
        "duplicate-mac-case-and-dash",
        one("52:54:00:aa:00:02", "52-54-00-AA-00-01"),
        "heads.standby.private_mac",
        "52-54-00-AA-00-01",
        "MAC 52:54:00:aa:00:01 of head2 is already used by heads.primary",
    ),
    Bad(
        "duplicate-mac-client",
        one("52:54:00:bb:00:01", "52:54:00:aa:00:02"),
        "clients[0].macs.node01",
        "node01: 52",
        "already used by heads.standby (head2)",
    ),
    Bad(
        "mac-for-unknown-node",
        one("      node01:", "      node09:"),
        "clients[0].macs.node09",
        "node09:",
        "is not a client of this group (it has node01 .. node04)",
    ),
    Bad(
        "duplicate-group-name",
        one("  - name: gpu", "  - name: compute"),
        "clients[1].name",
        "  - name: compute\n    image: oscarimage\n    nodeset",
        "already used by clients[0]",
    ),
    # client ranges
    Bad(
        "range-past-subnet",
        one("gpu[1-2]", "gpu[1-3]"),
        "clients[1].nodeset",
        "gpu[1-3]",
        "the last would be 198.18.0.255, beyond 198.18.0.254; at most 2 fit",
    ),
    Bad(
        "range-over-head",
        one("    private_ip: 198.18.0.2", "    private_ip: 198.18.0.102"),
        "clients[0].start_ip",
        "198.18.0.100",
        "includes 198.18.0.102 (heads.standby.private_ip)",
    ),
    Bad(
        "range-start-outside",
        one("198.18.0.100", "198.18.7.100"),
        "clients[0].start_ip",
        "198.18.7.100",
        "outside the private subnet",
    ),
    Bad(
        "range-start-network-address",
        one("198.18.0.253", "198.18.0.0"),
        "clients[1].start_ip",
        "start_ip: 198.18.0.0",
        "is the network address",
    ),
    # client names
    Bad("nodeset-syntax", one("gpu[1-2]", "gpu[1-2"), "clients[1].nodeset", "gpu[1-2", "is not a node set"),
    Bad(
        "nodeset-and-base-name",
        one("    nodeset: gpu[1-2]", "    base_name: gpu\n    nodeset: gpu[1-2]"),
        "clients[1]",
        "  - name: gpu",
        "give either nodeset or base_name + count",
    ),
    Bad(
        "nodeset-bad-host-names",
        one("gpu[1-2]", "GPU_[1-2]"),
        "clients[1].nodeset",
        "GPU_",
        "'GPU_1', which is not a valid host name",
    ),
    # images
    Bad(
        "image-undefined",
        one("  - name: compute\n    image: oscarimage", "  - name: compute\n    image: nosuchimage"),
        "clients[0].image",
        "nosuchimage",
        "not defined under images (defined: oscarimage, serverimage)",
    ),
    Bad(
        "image-twice",
        one("  - name: oscarimage\n", "  - name: oscarimage\n  - name: oscarimage\n    source: debootstrap:trixie\n"),
        "images[2].name",
        "  - name: oscarimage\n    source: debootstrap:trixie",
        "image 'oscarimage' is defined twice",
    ),
    # HA timing
    Bad(
        "dead-time-short",
        one("  dead_time: 0.6", "  dead_time: 0.5"),
        "ha.dead_time",
        "dead_time: 0.5",
        "less than 3 x heartbeat_interval (0.2 s); use at least 0.6 s",
    ),
    Bad(
        "heartbeat-zero",
        one("  heartbeat_interval: 0.2", "  heartbeat_interval: 0"),
        "ha.heartbeat_interval",
        "heartbeat_interval: 0",
        "use a value more than 0",
    ),
]

GOOD = {
    "as-given": (),
    "netmask-as-prefix": one(
        "    start_ip: 198.18.0.100\n    netmask: 255.255.255.0", "    start_ip: 198.18.0.100\n    netmask: 24"
    ),
    "netmask-as-slash-prefix": one(
        "    start_ip: 198.18.0.100\n    netmask: 255.255.255.0", "    start_ip: 198.18.0.100\n    netmask: /24"
    ),
    "mac-upper-case-dashes": one("52:54:00:aa:00:02", "52-54-00-AA-00-02"),
    "mac-upper-case-colons": one("52:54:00:bb:00:01", "52:54:00:BB:00:01"),
    "ifname-15-chars-with-dot": one(
        "    public_interface: eth1\n    public_ip: 198.19.0.11",
        "    public_interface: enp0s31f6.1001\n    public_ip: 198.19.0.11",
    ),
    "dead-time-exactly-3x": one(
        "  heartbeat_interval: 0.2\n  dead_time: 0.6", "  heartbeat_interval: 2\n  dead_time: 6\n  lease_s: 4"
    ),
    "range-fills-subnet-to-the-top": one("gpu[1-2]", "gpu[01-02]"),
    "range-just-past-head": one("198.18.0.100", "198.18.0.4"),
    "nodeset-several-ranges": (("gpu[1-2]", "gpu[1,7]"),),
    "no-heartbeat-network-no-heartbeat-ips": (
        ("  heartbeat:\n    subnet: 198.18.1.0/24\n", ""),
        ("    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.1\n", ""),
        ("    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2\n", ""),
    ),
    "head-gateway-on-private": one(
        "    gateway: 198.19.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
        "    gateway: 198.18.0.1\n    heartbeat_interface: eth2\n    heartbeat_ip: 198.18.1.2",
    ),
    "words-that-yaml-1-1-calls-booleans": one("  name: labcluster", "  name: no"),
    "zero-padded-count": one("    count: 4", "    count: 04"),
    "minimal": (("images:\n", "images:\n  - name: unused\n"),),
}


@pytest.mark.parametrize("changes", GOOD.values(), ids=GOOD.keys())
def test_good_variant_is_valid(changes: tuple[tuple[str, str], ...]) -> None:
    assert problems(edit(BASE, *changes)) == []


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_variant_reports_file_line_path_and_fix(case: Bad) -> None:
    text = edit(BASE, *case.changes)
    found = problems(text)
    prefix = f"cluster.yaml:{line_of(text, case.at)}: {case.path}: "
    matching = [line for line in found if line.startswith(prefix)]
    assert matching, f"no problem starts with {prefix!r}; got:\n" + "\n".join(found)
    assert any(case.phrase in line for line in matching), "\n".join(found)
    for extra in case.also:
        assert any(extra in line for line in found), "\n".join(found)
    assert len(found) == case.count, "\n".join(found)


SLASH_30 = """\
cluster: {name: tiny}
networks:
  private: {subnet: 198.18.0.0/30}
  public: {subnet: 198.19.0.0/29}
heads:
  primary: {hostname: head1, private_ip: 198.18.0.1, public_ip: 198.19.0.1, alias_ip: 198.19.0.3, netmask: 30}
  standby: {hostname: head2, private_ip: 198.18.0.2, public_ip: 198.19.0.2, alias_ip: 198.19.0.3, netmask: 30}
images: [{name: img}]
clients:
  - {image: img, base_name: n, count: COUNT, start_ip: START, netmask: 255.255.255.252}
"""


def test_client_range_that_overflows_a_slash_30() -> None:
    """A /30 has two usable addresses (.1, .2), both taken by the heads; .3 is its broadcast address."""
    found = problems(SLASH_30.replace("COUNT", "2").replace("START", "198.18.0.2"))
    assert found == [
        "cluster.yaml:10: clients[0].count: 2 clients from 198.18.0.2 run past the subnet 198.18.0.0/30: the last "
        "would be 198.18.0.3, beyond 198.18.0.2; at most 1 fit from this start_ip",
        "cluster.yaml:10: clients[0].start_ip: the range 198.18.0.2-198.18.0.3 includes 198.18.0.2 "
        "(heads.standby.private_ip); move start_ip past them or reduce the count",
    ]


def test_client_range_that_fills_a_slash_29_exactly() -> None:
    slash_29 = SLASH_30.replace("/30", "/29").replace("netmask: 30", "netmask: 29").replace("252", "248")
    assert problems(slash_29.replace("COUNT", "4").replace("START", "198.18.0.3")) == []
    found = problems(slash_29.replace("COUNT", "5").replace("START", "198.18.0.3"))
    assert len(found) == 1 and "at most 4 fit from this start_ip" in found[0]
