"""Every form of the wizard: the seed's field names and defaults beside haoscar's request fields (docs/web-wizard.md).

Defaults are the CLI's (``cli_default``); where the seed's dialog prefilled a value (Image Name ``serverimage``, IP
Assignment Method ``static``, Post Install Action ``beep``, the interfaces ``eth1``) the form starts with it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from haoscar.commands import dhcp, images, install, macs, netboot, standby, wizard_steps
from haoscar.commands.apply import ApplySpec
from haoscar.commands.cluster_test import DEFAULT_NODES, ClusterTestRequest
from haoscar.commands.install_complete import SPEC_PATH
from haoscar.commands.nodes import DefineClients
from haoscar.commands.wizard_forms import Form, FormField
from haoscar.provision.installer_kernel import META_PACKAGE

__all__ = ["FORMS", "form_named", "forms_of"]

F = FormField
IP = ("static", "dhcp")
POST = ("beep", "reboot", "shutdown")


def _packages_line(values: Mapping[str, Any]) -> str:
    names = [shlex.quote(str(p)) for p in values.get("packages") or []]
    image = values.get("image")
    if image:
        return " ".join(["haoscar pkg install", *names, "--image", shlex.quote(str(image)), "--image-only"])
    return "haoscar image build NAME --packages " + shlex.quote(",".join(values.get("packages") or []))


def _test_line(values: Mapping[str, Any]) -> str:
    sync = "haoscar cluster sync" + (f" {shlex.quote(str(values['sync_nodes']))}" if values.get("sync_nodes") else "")
    test = ["haoscar cluster test", shlex.quote(str(values.get("nodes") or DEFAULT_NODES))]
    if values.get("user"):
        test += ["--user", shlex.quote(str(values["user"]))]
    for name, default in (("time_threshold", 1.0), ("connect_timeout", 5.0)):
        value = values.get(name)
        if value is not None and value != default:
            test += ["--" + name.replace("_", "-"), shlex.quote(f"{value:g}" if isinstance(value, float) else value)]
    return f"{sync} && {' '.join(test)}"


def _setup_test(
    nodes: str, user: str | None, time_threshold: float, connect_timeout: float, sync_nodes: str | None
) -> wizard_steps.SetupTest:
    test = ClusterTestRequest(nodes=nodes, user=user, time_threshold=time_threshold, connect_timeout=connect_timeout)
    return wizard_steps.SetupTest(test=test, sync_nodes=sync_nodes)


IP_FIELD = F("ip_assignment", "IP assignment method", "choice", "static", "IP Assignment Method", choices=IP)
POST_FIELD = F("post_install", "Post install action", "choice", "beep", "Post Install Action", choices=POST)

FORMS: tuple[Form, ...] = (
    Form("apply", "server", "Load the cluster spec", "Apply spec", wizard_steps.apply_spec, ApplySpec, (
        F("file", "Cluster spec file (on this head)", "path", SPEC_PATH, positional=True),
        F("prune", "Delete nodes the spec no longer has", "bool"),
    ), ("spec", "apply"), blame="file"),
    Form("packages", "packages", "Select packages", "Select packages", wizard_steps.select_packages,
         wizard_steps.SelectPackages, (
        F("packages", "Packages (comma or space separated)", "list", seed="Select packages to install",
          help="Debian package names, e.g. htop,slurmd"),
        F("image", "Install into this existing image now (optional)", "optional"),
    ), ("pkg", "install"), cli_override=_packages_line),
    Form("build", "image", "Build an image (debootstrap)", "Build Image", images.image_build, images.BuildImage, (
        F("name", "Image name", default="oscarimage", seed="Image Name", positional=True),
        F("suite", "Debian suite", default="bookworm", cli_default="bookworm"),
        F("packages", "Extra packages (comma or space separated)", "list"),
        IP_FIELD, POST_FIELD,
    ), ("image", "build"), long=True),
    Form("fetch", "image", "Fetch a System Installation Suite Image", "Fetch Image", images.image_fetch,
         images.FetchRequest, (
        F("name", "Image name", default="serverimage", seed="Image Name", positional=True),
        F("golden_client", "Golden client (host name or address)", seed="Client Name",
          help="the machine to copy, e.g. the primary head itself"),
        F("ssh_user", "SSH user name", default="root", seed="SSH User Name", cli_default="root"),
        F("ssh_port", "SSH port", "int", "22", cli_default="22"),
        F("source_root", "Directory to copy", default="/", cli_default="/"),
        IP_FIELD, POST_FIELD,
    ), ("image", "fetch"), long=True),
    Form("import", "image", "Import a local tree as an image", "Import Image", images.image_import,
         images.ImportImage, (
        F("name", "Image name", default="oscarimage", seed="Image Name", positional=True),
        F("directory", "Root tree on this head", "path", help="a directory holding a root file system",
          positional=True),
        IP_FIELD, POST_FIELD,
    ), ("image", "import"), long=True),
    Form("clients", "clients", "Define OSCAR Clients", "Add Clients", wizard_steps.define_clients, DefineClients, (
        F("image", "Image name", default="oscarimage", seed="Image Name"),
        F("base_name", "Base name", "optional", "oscarnode", "Base name"),
        F("count", "Number of hosts", "optional-int", seed="Number of Hosts"),
        F("start_number", "Starting number", "int", "1", "Starting Number", cli_default="1"),
        F("padding", "Padding", "int", "0", "Padding", cli_default="0"),
        F("start_ip", "Starting IP", seed="Starting IP"),
        F("netmask", "Subnet mask", "optional", seed="Subnet Mask", help="default: the spec's private network"),
        F("gateway", "Default gateway", "optional", seed="Default Gateway"),
        F("domain", "Domain name", "optional", seed="Domain Name", help="default: the spec's cluster domain"),
        F("nodeset", "Or a node set instead of base name and count", "optional", help="e.g. node[001-016]"),
        F("interface", "Private interface", default="eth0", cli_default="eth0"),
        F("group", "Group (default: the base name)", "optional"),
    ), ("node", "add")),
    Form("standby", "standby", "Add Standby Server", "Add Standby Server", standby.standby_add, standby.StandbyServer, (
        F("image", "Image name", default="serverimage", seed="Image Name", cli_default="serverimage"),
        F("primary_public_interface", "Primary server's public network interface", default="eth1",
          seed="Primary server's Public Network Interface", cli_default="eth1"),
        F("standby_public_interface", "Standby server's public network interface", default="eth1",
          seed="Standby server's Public Network Interface", cli_default="eth1"),
        F("alias_ip", "Standby server's public alias IP", seed="Standby server's Public Alias IP"),
        F("local_ip", "Standby server's local IP", seed="Standby server's local IP"),
        F("netmask", "Subnet mask", "optional", seed="Subnet Mask", help="default: the spec's private network"),
        F("gateway", "Default gateway", "optional", seed="Default Gateway"),
        F("hostname", "Standby server's host name", default="standby", cli_default="standby"),
        F("public_ip", "Standby server's own public IP (optional)", "optional"),
        F("private_interface", "Standby server's private interface", default="eth0", cli_default="eth0"),
        F("domain", "Domain name", "optional", help="default: the spec's cluster domain"),
    ), ("standby", "add")),
    Form("collect", "macs", "Collect MAC Address", "Collect MACs", macs.collect, macs.CollectMacs, (
        F("interface", "Private interface to listen on", default="eth0", seed="Collect MAC Address"),
        F("timeout", "Seconds to listen", "float", "60", cli_default="60"),
        F("count", "Stop after this many new MACs (optional)", "optional-int"),
        F("auto", "Assign each new MAC to the next node without one", "bool"),
    ), ("mac", "collect"), long=True),
    Form("assign", "macs", "Assign MAC to Node", "Assign MAC to Node", wizard_steps.assign_mac, macs.AssignMac, (
        F("node", "Node", seed="Assign MAC to Node", positional=True),
        F("mac", "MAC address", positional=True, help="e.g. 52:54:00:12:34:56"),
    ), ("mac", "assign")),
    Form("assign_all", "macs", "Assign all MACs in order", "Assign All", macs.assign_all, macs.AssignAll, (
        F("nodeset", "Nodes to receive the collected MACs", seed="Assign all MACs", positional=True,
          help="in order of arrival, to the nodes without a MAC, e.g. node[01-16]"),
    ), ("mac", "assign-all"), blame="nodeset"),
    Form("dhcp", "dhcp", "Configure DHCP Server", "Configure DHCP Server", dhcp.configure, dhcp.ConfigureDhcp, (
        F("interface", "Private interface to serve", "optional", help="default: the head's, e.g. eth0"),
        F("quarantine", "Range for unknown MACs START-END (optional)", "optional"),
        F("server", "Boot server address", "optional", help="default: the head's private IP"),
        F("port", "Boot server port", "optional-int", help="default: 8470"),
    ), ("dhcp", "configure")),
    Form("netboot", "netboot", "Setup Network Boot", "Setup Network Boot", netboot.sync, netboot.SyncNetboot, (
        F("nodeset", "Only these nodes (default: all)", "optional", positional=True),
    ), ("netboot", "sync"), blame="nodeset"),
    Form("installer", "netboot", "Build the installer", "Build Installer", netboot.build_installer,
         netboot.BuildInstaller, (
        F("kernel_package", "Kernel package", default=META_PACKAGE, cli_default=META_PACKAGE,
          help="linux-image-amd64 for real hardware"),
    ), ("netboot", "build-installer"), long=True, blame="kernel_package"),
    Form("install_settings", "install", "Install settings", "Save settings", install.configure,
         install.InstallSettings, (
        F("stall_timeout", "Seconds without a report before an install counts as failed", "optional-float"),
        F("token_ttl", "Seconds a node's install credential stays valid", "optional-float"),
    ), ("install", "configure")),
    Form("complete", "complete", "Complete Installation", "Complete Installation",
         wizard_steps.complete_installation, wizard_steps.CompleteInstallation, (
        F("spec", "Cluster spec file (on this head)", "path", SPEC_PATH, help="heads, witness, services, replication"),
        F("ssh_user", "SSH user on the standby and the witness", default="root", cli_default="root"),
        F("ssh_port", "Their SSH port", "int", "22", cli_default="22"),
        F("start_command", "Start command (default: the systemd units)", "optional"),
        F("wait", "Seconds to wait for the heads", "float", "60", cli_default="60"),
    ), ("install", "complete"), long=True),
    Form("test", "test", "Complete and Test Cluster Setup", "Test Cluster", wizard_steps.setup_test, _setup_test, (
        F("nodes", "Nodes to test", default=DEFAULT_NODES, seed="Test Cluster Setup"),
        F("user", "Write /home as this cluster user (optional; root: as root)", "optional"),
        F("time_threshold", "Seconds a node's clock may be off", "float", "1"),
        F("connect_timeout", "Seconds to connect", "float", "5"),
        F("sync_nodes", "Sync only these nodes first (default: heads and every node)", "optional",
          seed="Complete Cluster Setup"),
    ), ("cluster", "test"), long=True, cli_override=_test_line),
)  # fmt: skip


def forms_of(step: str) -> list[Form]:
    return [form for form in FORMS if form.step == step]


def form_named(key: str) -> Form | None:
    return next((form for form in FORMS if form.key == key), None)
