"""A spec with twenty mistakes: all twenty reported in one run, each at its line and path."""

from __future__ import annotations

from pathlib import Path

from haoscar.spec import check_text

TWENTY = Path(__file__).parent / "data" / "twenty_mistakes.yaml"

EXPECTED = [
    (4, "cluster.name", "it would be 'lab-cluster'"),
    (5, "cluster.domian", "did you mean 'domain'?"),
    (10, "networks.private.gateway", "outside the private subnet 198.18.0.0/24"),
    (13, "networks.public.gateway", "is the network address"),
    (23, "heads.primary.public_interface", "already the private interface"),
    (26, "heads.primary.netmask", "not a contiguous netmask"),
    (30, "heads.standby.hostname", "host name 'head1' is already used by heads.primary"),
    (31, "heads.standby.private_interface", "1-15 characters"),
    (32, "heads.standby.private_ip", "is not an IPv4 address"),
    (33, "heads.standby.private_mac", "MAC 52:54:00:aa:00:01"),
    (38, "heads.standby.heartbeat_ip", "outside the heartbeat subnet"),
    (42, "images[0].post_install", "use 'beep', 'reboot' or 'shutdown'"),
    (47, "clients[0].count", "expected a whole number"),
    (50, "clients[1].image", "'gpuimage' is not defined under images (defined: oscarimage)"),
    (51, "clients[1].nodeset", "at most 3 fit from this start_ip"),
    (55, "clients[1].macs.gpu9", "is not a client of this group (it has gpu1 .. gpu4)"),
    (57, "clients[2].nodeset", "is not a node set"),
    (63, "clients[3].start_ip", "includes 198.18.0.1 (heads.primary.private_ip)"),
    (68, "ha.dead_time", "use at least 3 s"),
    (72, "ha.witness.addresses[0]", "on none of the cluster's networks"),
]


def test_every_one_of_the_twenty_mistakes_is_reported_in_one_run() -> None:
    text = TWENTY.read_text()
    spec, problems = check_text(text, "twenty_mistakes.yaml")
    assert spec is None
    assert len(problems) == 20
    assert [(p.line, p.path) for p in problems] == [(line, path) for line, path, _ in EXPECTED]
    for problem, (_, _, phrase) in zip(problems, EXPECTED, strict=True):
        assert phrase in problem.message
    # The file marks each mistake with a numbered comment on its line (17's is one line below its mistake).
    lines = text.splitlines()
    marked = {i + 1 for i, line in enumerate(lines) if "  # " in line and line.split("# ")[-1][:2].strip().isdigit()}
    assert marked - {57} == {p.line for p in problems} - {57}
