"""Head-node services by kind: ``build_service`` makes the resource for one ``ha.services`` entry."""

from __future__ import annotations

from haoscar.ha.api import ApiProvider
from haoscar.ha.services.base import ResourceError, ServiceEnv, ServiceResource
from haoscar.ha.services.bootserver import BootServerService
from haoscar.ha.services.chrony import ChronyService
from haoscar.ha.services.dnsmasq import DnsmasqService
from haoscar.ha.services.nfs_ganesha import NfsGaneshaService
from haoscar.ha.services.shell import CommandService, ProcessService, TcpService
from haoscar.ha.services.slurmctld import SlurmctldService
from haoscar.ha.services.status_api import StatusApiService
from haoscar.ha.services.systemd import SystemdService
from haoscar.ha.services.web import WebConsoleService
from haoscar.spec.models import Service

KINDS: dict[str, type[ServiceResource]] = {
    "command": CommandService,
    "systemd": SystemdService,
    "tcp": TcpService,
    "process": ProcessService,
    "dnsmasq": DnsmasqService,
    "bootserver": BootServerService,
    "status-api": StatusApiService,
    "slurmctld": SlurmctldService,
    "nfs-ganesha": NfsGaneshaService,
    "chrony": ChronyService,
    "web": WebConsoleService,
}


def build_service(spec: Service, env: ServiceEnv) -> ServiceResource:
    return KINDS[spec.kind](spec, env)


__all__ = [
    "KINDS",
    "ApiProvider",
    "ResourceError",
    "ServiceEnv",
    "ServiceResource",
    "build_service",
]
