"""Kind ``dnsmasq``: DHCP for the compute clients on the private network, served by the active head.

dnsmasq runs in the foreground as the daemon's child (``--keep-in-foreground``), with its config, lease file and
pid file under the state directory, so two heads (or two lab hosts on one machine) never share a file. The config
comes from ``render_lab_dhcp_config``: a minimal DHCP-only config drawn from the spec. The provisioning layer's
renderer (from the cluster database, with TFTP and network boot) can replace it by being passed as ``renderer``.

dnsmasq is root only to bind its ports and open those files, then runs as an unprivileged account
(``provision.dnsmasq_user``): a compute node that finds a hole in its DHCP parsing does not get root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.ha.services.base import ServiceEnv, ServiceResource
from haoscar.ha.services.proc import read_pid_file, run_shell, spawn, terminate, within
from haoscar.provision.dnsmasq_user import dnsmasq_user
from haoscar.spec.models import ClusterSpec, HeadNode, Service
from haoscar.spec.nodes import group_names


@dataclass(frozen=True)
class DhcpPaths:
    config: Path
    leases: Path
    pid_file: Path
    log: Path

    @classmethod
    def under(cls, directory: Path) -> DhcpPaths:
        return cls(
            directory / "dnsmasq.conf",
            directory / "dnsmasq.leases",
            directory / "dnsmasq.pid",
            directory / "dnsmasq.log",
        )


def render_lab_dhcp_config(
    spec: ClusterSpec, head: HeadNode, paths: DhcpPaths, lease_time: str = "2m", run_as: tuple[str, str] | None = None
) -> str:
    """A DHCP-only dnsmasq config for ``head``: its private interface, one range per client group spanning the
    group's addresses, and a fixed address for every client whose MAC is known. ``port=0`` turns DNS off."""
    private = spec.networks.private.subnet
    run_user, run_group = run_as or dnsmasq_user()
    lines = [
        f"# written by haoscar for {head.hostname} (render_lab_dhcp_config); do not edit",
        "port=0",
        f"interface={head.private_interface}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        # Authoritative, so that a client renewing a lease granted by the other head is answered at once.
        "dhcp-authoritative",
        f"dhcp-leasefile={paths.leases}",
        f"pid-file={paths.pid_file}",
        f"user={run_user}",  # after binding and opening its files (lease file, log, pid file) as root
        f"group={run_group}",
        f"domain={spec.cluster.domain}",
        # Its own log file: a lab host must not write into the machine's syslog.
        f"log-facility={paths.log}",
        "log-dhcp",
    ]
    for index, group in enumerate(spec.clients):
        names = group_names(group)
        tag = f"group{index}"
        first = group.start_ip
        last = ipaddress.IPv4Address(int(first) + len(names) - 1)
        if first not in private or last not in private:
            continue  # the spec checks report this; a config must not hand out foreign addresses
        lines.append(f"dhcp-range=set:{tag},{first},{last},{group.netmask},{lease_time}")
        gateway = group.gateway or spec.networks.private.gateway
        if gateway is not None:
            lines.append(f"dhcp-option=tag:{tag},option:router,{gateway}")
        for offset, name in enumerate(names):
            mac = group.macs.get(name)
            if mac:
                lines.append(f"dhcp-host={mac},{first + offset},{name},{lease_time}")
    return "\n".join(lines) + "\n"


Renderer = Callable[[ClusterSpec, HeadNode, DhcpPaths], str]


class DnsmasqService(ServiceResource):
    renderer: Renderer = staticmethod(render_lab_dhcp_config)

    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self.paths = DhcpPaths.under(env.service_dir(spec.name))
        self._proc: asyncio.subprocess.Process | None = None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def render(self) -> str:
        head = self.env.head
        if self.env.spec is None or head is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; dnsmasq serves from a head's private side")
        return type(self).renderer(self.env.spec, head, self.paths)

    async def start(self) -> None:
        if self.pid() is not None:
            return
        binary = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
        if binary is None:
            raise self.fail("dnsmasq is not installed; install the Debian package dnsmasq-base")
        atomic_write(self.paths.config, self.render())
        self.paths.pid_file.unlink(missing_ok=True)
        argv = [binary, "--keep-in-foreground", f"--conf-file={self.paths.config}"]
        proc = await spawn(argv, self.log_path)
        self._proc = proc
        await self.wait_ready(proc)

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout)
            return None if result.ok else f"monitor {result.describe()}"
        pid = self.pid()
        if pid is None:
            if self._proc is None:
                return "not started"
            return f"dnsmasq exited with status {self._proc.returncode} (log: {self.log_path})"
        # dnsmasq writes its pid file once its sockets are bound: before that it is not serving yet.
        if read_pid_file(self.paths.pid_file) != pid:
            return f"dnsmasq (pid {pid}) has not written {self.paths.pid_file} yet"
        return None

    async def stop(self) -> bool:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return True
        gone = await terminate(proc.pid, self.spec.stop_timeout, self.spec.kill_timeout)
        if gone:
            with contextlib.suppress(TimeoutError):
                await within(proc.wait(), self.spec.kill_timeout)
            self.paths.pid_file.unlink(missing_ok=True)
        return gone
