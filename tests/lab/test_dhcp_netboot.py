"""Real dnsmasq in the head host, busybox udhcpc in client hosts: fixed addresses, boot files, MAC collection,
localboot, and changes picked up by the running dnsmasq without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.lab import LabInterface
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.netboot_macs import assign_macs
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD = "head1"
KNOWN_MAC = "52:54:00:d0:00:01"
UNKNOWN_MAC = "52:54:00:d0:00:99"
UDHCPC_SCRIPT = """#!/bin/sh
# Record what the server offered; configure nothing.
[ "$1" = bound ] && env > "{out}/$(hostname).$1.env"
exit 0
"""


HAOSCAR = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar"]


def haoscar(lab: Lab, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return lab.exec(HEAD, [*HAOSCAR, *args], timeout=timeout, check=False)


def fetch(lab: Lab, path: str) -> str:
    """GET from the boot server on the head's private address, retried while it starts."""
    code = (
        "import sys, time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen('http://198.18.0.1:8470{path}', timeout=2).read().decode()); break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
        "else:\n"
        "    sys.exit('boot server did not answer')\n"
    )
    return lab.exec(HEAD, [sys.executable, "-c", code], timeout=30).stdout


def dhcp_client(lab: Lab, host: str, out: Path, *extra: str) -> dict[str, str] | None:
    """One DHCP exchange with busybox udhcpc; the offered values as udhcpc's script sees them, None if no lease."""
    env_file = out / f"{host}.bound.env"
    env_file.unlink(missing_ok=True)
    argv = ["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-O", "hostname"]
    result = lab.exec(host, [*argv, "-s", str(out / "udhcpc.sh"), *extra], check=False, timeout=20)
    if result.returncode != 0 or not env_file.exists():
        return None
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


def test_dnsmasq_serves_known_macs_collects_unknown_ones_and_reloads_in_place(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    # The lab's own node hosts would hold the clients' addresses already: the lab gets no clients, the database
    # the full demo cluster.
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    state = lab.host_dir(HEAD) / "var/lib/haoscar"
    db = open_database(state)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", KNOWN_MAC, "test")])
    finally:
        db.close()
    lab.add_host("dc1", [LabInterface("eth0", "private", mac=KNOWN_MAC)])
    lab.add_host("dc2", [LabInterface("eth0", "private", mac=UNKNOWN_MAC)])
    (tmp_path / "udhcpc.sh").write_text(UDHCPC_SCRIPT.format(out=tmp_path))
    (tmp_path / "udhcpc.sh").chmod(0o755)

    configured = haoscar(lab, "dhcp", "configure", "--json")
    assert configured.returncode == 0, configured.stderr
    pid = json.loads(configured.stdout)["dnsmasq"]["pid"]

    # A known MAC: its fixed address, host name and the BIOS iPXE boot file; UEFI and iPXE clients get theirs.
    offer = dhcp_client(lab, "dc1", tmp_path)
    assert offer is not None, "the known MAC got no lease"
    assert (offer["ip"], offer["hostname"], offer.get("boot_file")) == ("198.18.0.101", "node01", "undionly.kpxe")
    assert offer["siaddr"] == "198.18.0.1"
    uefi = dhcp_client(lab, "dc1", tmp_path, "-x", "0x5d:0007")
    assert uefi is not None and uefi.get("boot_file") == "ipxe.efi"
    ipxe = dhcp_client(lab, "dc1", tmp_path, "-x", "0x4d:69505845")  # user class "iPXE"
    assert ipxe is not None and ipxe.get("boot_file") == "http://198.18.0.1:8470/boot.ipxe"

    # An unknown MAC gets nothing, and `mac collect` (running beside dnsmasq) shows it.
    collector = lab.popen(
        HEAD,
        [*HAOSCAR, "mac", "collect", "--interface", "eth0", "--timeout", "20", "--count", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # the collector's interpreter start-up; udhcpc retries three times anyway
        assert dhcp_client(lab, "dc2", tmp_path) is None
        out, err = collector.communicate(timeout=25)
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
    assert collector.returncode == 0, err
    assert json.loads(out)["new_macs"] == [UNKNOWN_MAC]
    listed = json.loads(haoscar(lab, "mac", "list", "--json").stdout)
    assert [s["mac"] for s in listed] == [UNKNOWN_MAC]

    # Assigning it (incremental sync, SIGHUP) gives that client its node's address from the same dnsmasq.
    assert haoscar(lab, "mac", "assign-all", "node02").returncode == 0
    offer2 = dhcp_client(lab, "dc2", tmp_path)
    assert offer2 is not None, (state / "netboot/dnsmasq.log").read_text()[-3000:]
    assert (offer2["ip"], offer2["hostname"]) == ("198.18.0.102", "node02")

    # A changed entry (node01 moves to .111) is picked up by the same dnsmasq through SIGHUP.
    assert haoscar(lab, "node", "set", "node01", "--ip", "198.18.0.111").returncode == 0
    synced = haoscar(lab, "netboot", "sync", "node01", "--json")
    assert json.loads(synced.stdout)["reloaded_pid"] == pid, synced.stderr
    offer = dhcp_client(lab, "dc1", tmp_path)
    assert offer is not None, (state / "netboot/dnsmasq.log").read_text()[-3000:]
    assert offer["ip"] == "198.18.0.111"

    # localboot: the node keeps its address and chainloader, but the boot server's script for it no longer
    # loads a kernel: it exits to the local disk.
    server = lab.popen(
        HEAD,
        [*HAOSCAR, "netboot", "serve", "--bind", "198.18.0.1", "--port", "8470"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert "kernel http://198.18.0.1:8470/files/oscarimage/vmlinuz" in fetch(lab, f"/boot/{KNOWN_MAC}.ipxe")
        disabled = haoscar(lab, "netboot", "disable", "node01", "--json")
        assert disabled.returncode == 0, disabled.stderr
        offer = dhcp_client(lab, "dc1", tmp_path)
        assert offer is not None and offer["ip"] == "198.18.0.111"
        script = fetch(lab, f"/boot/{KNOWN_MAC}.ipxe")
        lines = script.strip().splitlines()
        assert lines[-1] == "exit" and not [line for line in lines if line.startswith("kernel")], script
    finally:
        server.terminate()
        server.wait(timeout=10)
    status = json.loads(haoscar(lab, "dhcp", "status", "--json").stdout)
    assert status["running"] and status["pid"] == pid  # reloaded all along, never restarted
    assert {lease["mac"] for lease in status["leases"]} == {KNOWN_MAC, UNKNOWN_MAC}
    assert haoscar(lab, "dhcp", "stop").returncode == 0
