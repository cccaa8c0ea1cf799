"""A fake HA pair for the dashboard's tests: the local daemon's real control socket protocol
(``haoscar.ha.control.serve_control`` on ``STATE/ha/control.sock``) answering canned statuses, and the peer's
read-only ``GET /status`` on a loopback HTTP server, both in the test's event loop.

    async with FakeHa(state_dir, local=head_status("head2", ...), peer=head_status("head1", ...)) as ha:
        ...   # ha.requests: the ops the control socket received; ha.replies["switchover"] = {...} to change one
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from haoscar.ha.control import control_path, serve_control


def head_status(
    node: str,
    peer: str,
    state: str,
    *,
    role: str = "primary",
    received: dict[str, int] | None = None,
    warnings: list[str] | None = None,
    last_failover: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A head's status with the keys ``haoscar ha status --json`` has (ha/status_model.py), trimmed to what the
    dashboard reads."""
    received = received if received is not None else {"private": 1000, "public": 1000, "heartbeat": 1000}
    active = state == "active"
    return {
        "node": node,
        "role": role,
        "state": state,
        "state_detail": state,
        "degraded": bool(warnings),
        "warnings": warnings or [],
        "vip": {"address": "198.19.0.10", "interface": "eth1", "held": active},
        "peer": {
            "node": peer,
            "state": "standby" if active else "active",
            "alive": True,
            "networks": {
                net: {"up": count > 0, "last_heard_ms": 120 if count else None, "received": count}
                for net, count in received.items()
            },
            "status_urls": [],
        },
        "lease": {
            "witness": ["198.18.0.250"],
            "valid": active,
            "remaining_s": 2.5 if active else 0.0,
            "holder": node if active else peer,
            "holder_remaining_s": 2.5,
        },
        "resources": [
            {"name": "dhcp", "kind": "dnsmasq", "state": "running" if active else "stopped", "total_restarts": 1},
            {"name": "web", "kind": "web", "state": "running" if active else "stopped", "total_restarts": 0},
        ],
        "replication": {
            "role": "source" if active else "target",
            "peer": peer,
            "lag_s": 0.25 if active else 0.0,
            "files_pending": 3 if active else 0,
            "standby_stale": False,
        },
        "last_failover": last_failover,
    }


class FakeHa:
    def __init__(self, state_dir: Path, local: dict[str, Any], peer: dict[str, Any] | None) -> None:
        self.state_dir = state_dir
        self.local = copy.deepcopy(local)
        self.peer = peer
        self.requests: list[str] = []
        self.replies: dict[str, dict[str, Any]] = {
            "switchover": {"ok": True, "message": f"handing the role over to {local['peer']['node']}"}
        }
        self._peer_server: TestServer | None = None

    async def _control(self, op: str, _request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(op)
        if op == "status":
            return self.local
        return self.replies.get(op, {"ok": False, "error": f"unknown operation {op!r}"})

    async def _peer_status(self, _request: web.Request) -> web.Response:
        return web.json_response(self.peer)

    async def __aenter__(self) -> FakeHa:
        if self.peer is not None:
            app = web.Application()
            app.router.add_get("/status", self._peer_status)
            self._peer_server = TestServer(app, host="127.0.0.1")
            await self._peer_server.start_server()
            self.local["peer"]["status_urls"] = [str(self._peer_server.make_url("/status"))]
        self._control_server = await serve_control(control_path(self.state_dir), self._control)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._control_server.close()
        await self._control_server.wait_closed()
        if self._peer_server is not None:
            await self._peer_server.close()
