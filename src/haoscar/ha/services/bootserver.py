"""Kind ``bootserver``: haoscar's boot server (iPXE scripts, kernels, initrds, node records, images, install
progress; ``provision/bootserver.py``) on the active head, listening on the compute-facing address.

It runs as ``haoscar netboot serve`` in a process of its own, never in the HA daemon's event loop: compute nodes
are not trusted, and a flood must not delay a heartbeat (docs/security.md). It binds the private alias IP when the
spec has one (the daemon adds the alias before the group starts and drops it after the group stopped), else the
head's own private IP; the port is the service's ``port`` (default 8470, the port ``netboot sync`` writes into the
iPXE scripts unless ``dhcp configure --port`` changed it). What it serves comes from this head's database and
state directory: on a standby that took over, the replicated database and image store. Healthy = the process lives
and its port accepts connections.
"""

from __future__ import annotations

import shlex
import sys

from haoscar.ha.services.base import ServiceEnv
from haoscar.ha.services.shell import TcpService
from haoscar.spec.models import Service
from haoscar.spec.topology import compute_facing_address

DEFAULT_PORT = 8470


class BootServerService(TcpService):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        address = self._address(env)
        argv = [sys.executable, "-m", "haoscar", "--state-dir", str(env.state_dir), "netboot", "serve"]
        argv += ["--bind", address or "0.0.0.0", "--port", str(spec.port or DEFAULT_PORT)]
        effective = spec.model_copy(
            update={"start": shlex.join(argv), "stop": None, "port": spec.port or DEFAULT_PORT, "address": address}
        )
        super().__init__(effective, env)
        self._bind = address

    @staticmethod
    def _address(env: ServiceEnv) -> str | None:
        """The private alias when the spec has one; else this head's own private IP."""
        head = env.head
        if env.spec is None or head is None:
            return None
        if head.private_alias_ip is not None:
            return str(compute_facing_address(env.spec))
        return str(head.private_ip)

    async def start(self) -> None:
        if self._bind is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; the boot server runs on a head")
        await super().start()
