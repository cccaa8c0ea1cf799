"""Head-node services by kind: ``build_service`` makes the resource for one ``ha.services`` entry."""

from __future__ import annotations

from haoscar.ha.api import ApiProvider
from haoscar.ha.services.base import ResourceError, ServiceEnv, ServiceResource
from haoscar.ha.services.dnsmasq import DnsmasqService, render_lab_dhcp_config
from haoscar.ha.services.shell import CommandService, ProcessService, TcpService
from haoscar.ha.services.status_api import StatusApiService
from haoscar.ha.services.systemd import SystemdService
from haoscar.spec.models import Service

KINDS: dict[str, type[ServiceResource]] = {
    "command": CommandService,
    "systemd": SystemdService,
    "tcp": TcpService,
    "process": ProcessService,
    "dnsmasq": DnsmasqService,
    "status-api": StatusApiService,
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
    "render_lab_dhcp_config",
]
