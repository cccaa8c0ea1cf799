"""Kind ``web``: the web console (``haoscar web serve``, docs/web.md) on the active head, bound to the public alias
so that its URL follows the active role.

It runs in a process of its own, never in the HA daemon's event loop (browsers and whoever reaches the public side
are not trusted: a flood must not delay a heartbeat). The address is this head's public alias (``alias_ip``: the
daemon adds it before the group starts and drops it after the group stopped); the port is the service's ``port``
(default 8443). Its certificate is in ``/etc/haoscar/web/`` (replicated with /etc/haoscar: the standby that takes
over serves the same certificate), issued by the primary from the cluster CA at the first start. Administrators,
sessions and the audit log are in the replicated database, so a browser stays logged in across a failover.
Healthy = the process lives and ALIAS:PORT accepts connections.
"""

from __future__ import annotations

import shlex
import sys

from haoscar.ha.services.base import ServiceEnv
from haoscar.ha.services.shell import TcpService
from haoscar.spec.models import Service

DEFAULT_PORT = 8443


class WebConsoleService(TcpService):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        head = env.head
        address = str(head.alias_ip) if head is not None else None
        port = spec.port or DEFAULT_PORT
        argv = [sys.executable, "-m", "haoscar", "--state-dir", str(env.state_dir), "web", "serve"]
        argv += ["--bind", address or "127.0.0.1", "--port", str(port)]
        effective = spec.model_copy(update={"start": shlex.join(argv), "stop": None, "port": port, "address": address})
        super().__init__(effective, env)
        self._bind = address

    async def start(self) -> None:
        if self._bind is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; the web console runs on a head")
        await super().start()
