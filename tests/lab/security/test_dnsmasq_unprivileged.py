"""Issue 10, finding 6: dnsmasq, which parses packets from every compute node, does not run as root.

The head's dnsmasq (``haoscar dhcp configure``) runs with no root uid once it has bound its ports (it keeps only
its network capabilities); from a lab host on the compute network, a DHCP client still gets its lease, TFTP still
serves the iPXE loader, and a TFTP request for a file outside the TFTP root (the config, a root-only file) gets
nothing.
"""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.lab import LabInterface
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.dnsmasq_user import dnsmasq_user
from haoscar.provision.netboot_macs import assign_macs
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD, CLIENT, PROBE = "head1", "dc1", "probe"
MAC = "52:54:00:d0:00:01"
HAOSCAR = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar"]
UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && env > "{out}/$(hostname).$1.env"
exit 0
"""


def status_fields(lab: Lab, pid: int) -> dict[str, str]:
    """/proc/PID/status of a process of the head (its pid is in the head's pid namespace)."""
    lines = lab.exec(HEAD, ["cat", f"/proc/{pid}/status"]).stdout.splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def tftp(lab: Lab, remote: str, local: Path) -> subprocess.CompletedProcess[str]:
    return lab.exec(PROBE, ["busybox", "tftp", "-g", "-r", remote, "-l", str(local), "198.18.0.1"], check=False)


def test_dnsmasq_serves_dhcp_and_tftp_without_root(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    state = lab.host_dir(HEAD) / "var/lib/haoscar"
    db = open_database(state)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", MAC, "test")])
    finally:
        db.close()
    lab.add_host(CLIENT, [LabInterface("eth0", "private", mac=MAC)])
    lab.add_host(PROBE, [LabInterface("eth0", "private", ip="198.18.0.150", prefix=24)])
    (tmp_path / "udhcpc.sh").write_text(UDHCPC_SCRIPT.format(out=tmp_path))
    (tmp_path / "udhcpc.sh").chmod(0o755)
    (state / "root-only").write_text("secret\n")
    (state / "root-only").chmod(0o600)

    configured = lab.exec(HEAD, [*HAOSCAR, "dhcp", "configure", "--json"], check=False)
    assert configured.returncode == 0, configured.stderr
    pid = int(json.loads(configured.stdout)["dnsmasq"]["pid"])
    try:
        # The running dnsmasq: the unprivileged account in every uid and gid; of root's capabilities it keeps only
        # what DHCP needs (dnsmasq's own choice): NET_BIND_SERVICE, NET_ADMIN (ARP entries), NET_RAW (ping check).
        user, _ = dnsmasq_user()
        account = pwd.getpwnam(user)
        fields = status_fields(lab, pid)
        assert fields["Name"] == "dnsmasq"
        assert fields["Uid"].split() == [str(account.pw_uid)] * 4, fields["Uid"]
        assert fields["Gid"].split() == [str(account.pw_gid)] * 4, fields["Gid"]
        assert account.pw_uid != 0 and account.pw_gid != 0
        network_only = (1 << 10) | (1 << 12) | (1 << 13)
        for kind in ("CapEff", "CapPrm"):
            assert int(fields[kind], 16) & ~network_only == 0, fields  # no DAC_OVERRIDE, SETUID, SYS_ADMIN, ...

        # DHCP: the known MAC gets its lease and its boot file.
        argv = ["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-O", "hostname",
                "-s", str(tmp_path / "udhcpc.sh")]  # fmt: skip
        assert lab.exec(CLIENT, argv, check=False, timeout=20).returncode == 0
        offer = dict(
            line.split("=", 1) for line in (tmp_path / f"{CLIENT}.bound.env").read_text().splitlines() if "=" in line
        )
        assert (offer["ip"], offer["hostname"], offer.get("boot_file")) == ("198.18.0.101", "node01", "undionly.kpxe")

        # TFTP: the loader, byte for byte; nothing outside the TFTP root.
        got = tftp(lab, "undionly.kpxe", tmp_path / "undionly.kpxe")
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "undionly.kpxe").read_bytes() == (state / "netboot/tftp/undionly.kpxe").read_bytes()
        for remote in ("../dnsmasq.conf", "../../root-only", str(state / "root-only"), "/etc/shadow"):
            refused = tftp(lab, remote, tmp_path / "stolen")
            assert refused.returncode != 0 and "secret" not in refused.stdout + refused.stderr, remote
            assert not (tmp_path / "stolen").exists(), remote  # busybox removes what it did not fully receive

        # The lease file, written after the drop through the descriptor dnsmasq opened as root.
        leases = json.loads(lab.exec(HEAD, [*HAOSCAR, "dhcp", "status", "--json"]).stdout)["leases"]
        assert [lease["mac"] for lease in leases] == [MAC]
    finally:
        assert lab.exec(HEAD, [*HAOSCAR, "dhcp", "stop"], check=False).returncode == 0
