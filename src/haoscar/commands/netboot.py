"""Network boot (OSCAR's Setup Network Boot): regenerate the DHCP entries and iPXE scripts, switch nodes between
netboot and localboot, serve the boot files, build the installer they boot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from haoscar.commands.env import Env
from haoscar.errors import FieldError, UserError
from haoscar.provision.installer_kernel import META_PACKAGE
from haoscar.provision.netboot_sync import SyncReport, netboot_sync
from haoscar.spec.nodes import expand_nodeset

if TYPE_CHECKING:
    from haoscar.provision.installer_build import InstallerBuild

__all__ = [
    "BOOT_MODES",
    "BootModeChanged",
    "BuildInstaller",
    "ServeBoot",
    "SetBootMode",
    "SyncNetboot",
    "SyncReport",
    "build_installer",
    "serve",
    "set_boot_mode",
    "sync",
]

BOOT_MODES = ("netboot", "localboot")


@dataclass(frozen=True)
class SyncNetboot:
    nodeset: str | None = None
    """Only these nodes (None: all)."""


@dataclass(frozen=True)
class SetBootMode:
    nodeset: str
    mode: str
    """netboot (DHCP gives the iPXE boot file) or localboot (an address, no boot file)."""


@dataclass
class BootModeChanged:
    mode: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    sync: SyncReport | None = None

    def as_dict(self) -> dict[str, object]:
        return {"boot_mode": self.mode, "changed": self.changed, "sync": self.sync.as_dict() if self.sync else None}


@dataclass(frozen=True)
class ServeBoot:
    binds: list[str]
    port: int = 8470
    limits: dict[str, str] = field(default_factory=dict)
    """Boot server limits for this run, NAME -> value (provision.bootserver_limits; docs/netboot.md)."""
    save_limits: bool = False
    """Also store ``limits`` in the database as the defaults of later runs."""


@dataclass(frozen=True)
class BuildInstaller:
    cache_dir: Path | None = None
    """Cache of the kernel package and initramfs (None: STATE/cache/installer)."""
    kernel_package: str = META_PACKAGE


def sync(env: Env, request: SyncNetboot) -> SyncReport:
    """Regenerate dnsmasq's config, per-node DHCP entries and iPXE scripts from the database; reload dnsmasq."""
    names = set(expand_nodeset(request.nodeset)) if request.nodeset else None
    return netboot_sync(env.database, env.state_dir, nodes=names)


def set_boot_mode(env: Env, request: SetBootMode) -> BootModeChanged:
    """Set the nodes' boot mode and rewrite the DHCP entries of those that changed."""
    from haoscar.commands.nodes import set_nodes

    if request.mode not in BOOT_MODES:
        raise FieldError("mode", f"{request.mode!r} is unknown; use {' or '.join(BOOT_MODES)}", sep=": ", bare=True)
    result = set_nodes(env.database, request.nodeset, boot_mode=request.mode)
    report = netboot_sync(env.database, env.state_dir, nodes=set(result.changed)) if result.changed else None
    return BootModeChanged(request.mode, list(result.changed), list(result.unchanged), report)


def serve(env: Env, request: ServeBoot) -> None:
    """Serve iPXE scripts, kernels, initrds and node records over HTTP until interrupted."""
    from haoscar.provision.bootserver import serve as run
    from haoscar.provision.bootserver_limits import effective_limits

    if not request.binds:
        raise FieldError("binds", "give at least one address to listen on, e.g. 198.18.0.1", sep=": ", bare=True)
    if not 1 <= request.port <= 65535:
        raise FieldError("port", f"{request.port} is not a TCP port (1-65535)", sep=": ", bare=True)
    from haoscar.commands.cluster_sync import sync_content
    from haoscar.provision.accounts_script import render_script

    limits = effective_limits(env.database, request.limits, save=request.save_limits)

    def accounts() -> str:  # a node being installed gets the cluster's users, hosts and keys (docs/install.md)
        try:
            return render_script(sync_content(env))
        except (UserError, OSError) as exc:  # the install goes on: the node gets them at the next cluster sync
            env.progress(f"an install plan without the cluster's accounts (the next `cluster sync` brings them): {exc}")
            return ""

    run(env.database, env.state_dir, list(request.binds), request.port, limits, accounts=accounts)


def build_installer(env: Env, request: BuildInstaller) -> InstallerBuild:
    """Build the installer's kernel and initramfs into STATE/netboot/boot/installer/ (served for every image);
    ``env.meter`` hears (percent, what) as it goes."""
    from haoscar.provision.installer_build import build_installer as build

    return build(env.state_dir, cache_dir=request.cache_dir, progress=env.meter, kernel_package=request.kernel_package)
