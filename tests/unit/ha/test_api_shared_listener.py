"""One listener process per head: the read-only status listener the daemon runs also serves the token API of the
``status-api`` service when it starts, and closes it when it stops, while the status stays served."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from test_api_auth import Daemon, free_port, run  # this directory is on sys.path (pytest rootdir-less import)

from haoscar.events import EventBus
from haoscar.ha.api import call_api, read_token
from haoscar.ha.apiserver import ApiProcess, SharedListener, announce_shared, forget_shared, spawn
from haoscar.ha.control import control_path, serve_control
from haoscar.ha.resources import ResourceGroup
from haoscar.ha.services import ServiceEnv, build_service
from haoscar.spec.models import HA, Service


def plain_status(port: int) -> tuple[int, bytes]:
    """``GET /status`` on the plain status listener, as ``haoscar ha status`` asks the peer."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/status")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def shared_api(
    tmp_path: Path, daemon: Daemon, status_port: int, spec: Service, token_file: Path
) -> AsyncIterator[tuple[ResourceGroup, ApiProcess]]:
    """The daemon's control socket, its status listener process announced as shared, and a resource group with
    the ``status-api`` service ``spec``; all closed at the end."""
    server = await serve_control(control_path(tmp_path), daemon.control)
    shared = announce_shared(control_path(tmp_path))
    listener = await spawn(control_path(tmp_path), ["127.0.0.1"], status_port, commands=True)
    shared.set_result(SharedListener(listener))
    env = ServiceEnv(
        node="head1", state_dir=tmp_path, bus=EventBus("head1"), api_provider=daemon,
        ha_config=HA(api_token_file=str(token_file)),
    )  # fmt: skip
    try:
        yield ResourceGroup([build_service(spec, env)], EventBus("h")), listener
    finally:
        forget_shared(control_path(tmp_path))
        await listener.close()
        server.close()


def test_the_status_listener_process_serves_the_token_api_and_keeps_serving_the_status(tmp_path: Path) -> None:
    status_port, api_port = free_port(), free_port()
    token_file = tmp_path / "etc" / "api.token"
    ca = tmp_path / "etc" / "tls" / "ca.crt"
    daemon = Daemon()

    async def scenario() -> None:
        spec = Service(name="api", kind="status-api", port=api_port)
        async with shared_api(tmp_path, daemon, status_port, spec, token_file) as (group, listener):
            for _ in range(2):  # a second start (the next takeover) uses the same process again
                await group.start()
                assert group.services[0].pid() == listener.pid != os.getpid()  # one process for both listeners
                status, body = await asyncio.to_thread(call_api, "127.0.0.1", api_port, "status", ca_file=ca)
                assert (status, body["role"]) == (200, "active")
                token = read_token(token_file)
                status, body = await asyncio.to_thread(call_api, "127.0.0.1", api_port, "switchover", token, ca_file=ca)
                assert (status, body["result"]) == (200, {"ok": True, "result": {"to": "head2"}})
                assert await group.services[0].check() is None
                assert await group.stop() is True
                refused = await asyncio.to_thread(_refused, api_port)
                assert refused  # the token API is closed ...
                status, raw = await asyncio.to_thread(plain_status, status_port)
                assert status == 200 and b'"role": "active"' in raw  # ... the status is still served
                assert listener.proc.returncode is None
        assert daemon.calls == ["switchover", "switchover"]

    run(scenario)


def _refused(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_hung_api_is_reported_once_its_probe_is_due_and_at_every_check_after(tmp_path: Path) -> None:
    """The process is checked at every ``interval``; the HTTPS probe runs every ``probe_interval`` once it has
    passed: a listener that stops answering (SIGSTOP) is reported at the first due probe, then at every check."""
    import signal
    import time

    status_port, api_port = free_port(), free_port()
    daemon = Daemon()
    spec = Service(name="api", kind="status-api", port=api_port, probe_interval=1.0, timeout=0.5)

    async def scenario() -> None:
        token_file = tmp_path / "etc" / "api.token"
        async with shared_api(tmp_path, daemon, status_port, spec, token_file) as (group, listener):
            service = group.services[0]
            await group.start()  # its start waited for a probe that passed
            passed = time.monotonic()
            os.kill(listener.pid, signal.SIGSTOP)
            try:
                assert await service.check() is None  # the process is there; the last probe is < 1 s old
                await asyncio.sleep(max(0.0, passed + 1.05 - time.monotonic()))
                problem = await service.check()
                assert problem is not None and problem.startswith(f"GET https://127.0.0.1:{api_port}/status failed")
                assert await service.check() == problem  # a failed probe is made again at the next check
            finally:
                os.kill(listener.pid, signal.SIGCONT)
            assert await service.check() is None  # answering again
            await group.stop()

    run(scenario)
