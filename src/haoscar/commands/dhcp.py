"""The private network's DHCP + TFTP server (OSCAR's Configure DHCP Server): dnsmasq with the rendered config.

The rule of when dnsmasq restarts lives here: it reads its main config only at start, so a changed
``dnsmasq.conf`` means a restart, while per-node entries are picked up by a reload (SIGHUP).
"""

from __future__ import annotations

from dataclasses import dataclass

from haoscar.commands.env import Env
from haoscar.provision import dhcp_server
from haoscar.provision.dhcp_server import DhcpStatus, Lease
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_snapshot import save_settings
from haoscar.provision.netboot_sync import SyncReport, netboot_sync

__all__ = [
    "ConfigureDhcp",
    "DhcpConfigured",
    "DhcpStarted",
    "DhcpStatus",
    "DhcpStopped",
    "Lease",
    "StartDhcp",
    "configure",
    "start",
    "status",
    "stop",
]


@dataclass(frozen=True)
class ConfigureDhcp:
    interface: str | None = None
    """The private interface to serve (None: keep; default the head's)."""
    quarantine: str | None = None
    """START-END: addresses for unknown MACs, without a boot file; "" removes the range; None keeps it."""
    server: str | None = None
    """The boot server's address (None: keep; default the head's private IP)."""
    port: int | None = None


@dataclass(frozen=True)
class DhcpConfigured:
    sync: SyncReport
    pid: int
    action: str
    """started, restarted, reloaded or unchanged."""
    config: str

    def as_dict(self) -> dict[str, object]:
        return {"sync": self.sync.as_dict(), "dnsmasq": {"pid": self.pid, "action": self.action}}


@dataclass(frozen=True)
class StartDhcp:
    interface: str | None = None


@dataclass(frozen=True)
class DhcpStarted:
    pid: int
    already_running: bool
    config: str

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "already_running": self.already_running, "config": self.config}


@dataclass(frozen=True)
class DhcpStopped:
    pid: int | None
    """The pid stopped, None when dnsmasq was not running."""

    def as_dict(self) -> dict[str, object]:
        return {"stopped_pid": self.pid}


def configure(env: Env, request: ConfigureDhcp) -> DhcpConfigured:
    """Store the settings, regenerate everything and start dnsmasq, or reload it (restart it only when its main
    config changed)."""
    paths = NetbootPaths.under(env.state_dir)
    save_settings(
        env.database,
        interface=request.interface,
        quarantine=request.quarantine,
        server=request.server,
        port=request.port,
    )
    report = netboot_sync(env.database, env.state_dir)
    pid, action = dhcp_server.ensure_running(
        paths, main_changed=report.main_changed, reloaded=report.reloaded_pid is not None
    )
    env.progress(f"dnsmasq {action} (pid {pid})")
    return DhcpConfigured(report, pid, action, str(paths.conf))


def start(env: Env, request: StartDhcp) -> DhcpStarted:
    """Start dnsmasq with the current config (regenerated first)."""
    paths = NetbootPaths.under(env.state_dir)
    if request.interface is not None:
        save_settings(env.database, interface=request.interface)
    netboot_sync(env.database, env.state_dir)
    already = dhcp_server.running_pid(paths)
    pid = dhcp_server.start(paths)
    return DhcpStarted(pid, already is not None, str(paths.conf))


def stop(env: Env) -> DhcpStopped:
    """Stop the dnsmasq haoscar started (found through its pid file)."""
    return DhcpStopped(dhcp_server.stop(NetbootPaths.under(env.state_dir)))


def status(env: Env) -> DhcpStatus:
    """Whether dnsmasq runs, on which interface, and its current leases."""
    return dhcp_server.status(NetbootPaths.under(env.state_dir))
