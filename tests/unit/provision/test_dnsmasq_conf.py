"""Golden-file tests of the rendered dnsmasq configuration and iPXE scripts (HAOSCAR_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path

from haoscar.provision.dnsmasq_conf import host_line, render_hostsfile, render_main
from haoscar.provision.ipxe import render_entry, render_script
from haoscar.provision.netboot_snapshot import NetbootSettings, NodeBoot, QuarantineRange

GOLDEN = Path(__file__).parent / "golden" / "netboot"
NETBOOT_DIR = Path("/var/lib/haoscar/netboot")
RUN_AS = ("dnsmasq", "nogroup")  # what dnsmasq_user() finds where the dnsmasq package made its account
SETTINGS = NetbootSettings(
    interface="eth0",
    subnet=ipaddress.IPv4Network("198.18.0.0/24"),
    server_ip="198.18.0.1",
    port=8470,
    domain="lab.haoscar",
)
NODES = [
    NodeBoot(
        "node01", "lab.haoscar", "compute", "netboot", "mac-assigned", "oscarimage", "198.18.0.101", "52:54:00:aa:00:01"
    ),
    NodeBoot(
        "node02", "lab.haoscar", "compute", "localboot", "installed", "oscarimage", "198.18.0.102", "52:54:00:aa:00:02"
    ),
    NodeBoot("node03", "lab.haoscar", "compute", "netboot", "defined", "oscarimage", "198.18.0.103", None),
]


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HAOSCAR_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with HAOSCAR_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file; HAOSCAR_UPDATE_GOLDEN=1 updates it"


def test_main_config_serves_known_hosts_only_with_ipxe_chainloading() -> None:
    text = render_main(SETTINGS, NETBOOT_DIR, run_as=RUN_AS)
    assert_golden("dnsmasq-static.conf", text)
    lines = text.splitlines()
    assert "port=0" in lines and "interface=eth0" in lines
    assert "dhcp-range=198.18.0.0,static,255.255.255.0,12h" in lines
    assert "dhcp-hostsdir=/var/lib/haoscar/netboot/hosts.d" in lines


def test_main_config_with_a_quarantine_range() -> None:
    q = QuarantineRange(ipaddress.IPv4Address("198.18.0.200"), ipaddress.IPv4Address("198.18.0.250"))
    quarantined = replace(SETTINGS, quarantine=q)
    text = render_main(quarantined, NETBOOT_DIR, run_as=RUN_AS)
    assert_golden("dnsmasq-quarantine.conf", text)
    assert "dhcp-range=198.18.0.200,198.18.0.250,255.255.255.0,10m" in text.splitlines()
    assert ",static," not in text


def test_host_lines_give_mac_address_and_name_and_skip_nodes_without_mac() -> None:
    # No set: tags (dnsmasq 2.90 crashes on SIGHUP with them); the boot mode lives in the iPXE script.
    assert host_line(NODES[0]) == "52:54:00:aa:00:01,198.18.0.101,node01\n"
    assert host_line(NODES[1]) == "52:54:00:aa:00:02,198.18.0.102,node02\n"
    assert host_line(NODES[2]) == ""
    assert_golden("hostsfile", render_hostsfile(NODES))


def test_netboot_script_loads_the_image_kernel_with_node_server_and_image_args() -> None:
    text = render_script(NODES[0], SETTINGS)
    assert_golden("node01-netboot.ipxe", text)
    assert text.startswith("#!ipxe\n")
    kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
    assert kernel.split()[1] == "http://198.18.0.1:8470/files/oscarimage/vmlinuz"
    assert "haoscar.node=node01" in kernel and "haoscar.image=oscarimage" in kernel
    assert "haoscar.server=http://198.18.0.1:8470" in kernel


def test_localboot_script_exits_to_the_local_disk() -> None:
    text = render_script(NODES[1], SETTINGS)
    assert_golden("node02-localboot.ipxe", text)
    assert text.splitlines()[-1] == "exit" and "kernel" not in text


def test_node_without_image_is_told_so_and_does_not_boot() -> None:
    text = render_script(replace(NODES[0], image=None), SETTINGS)
    assert "no image" in text and "kernel" not in text


def test_entry_script_chains_to_the_script_of_the_clients_mac() -> None:
    text = render_entry(SETTINGS)
    assert_golden("entry.ipxe", text)
    assert "chain http://198.18.0.1:8470/boot/${mac}.ipxe" in text
