"""The status API over real HTTPS on loopback: open reads, token-guarded writes, only the given addresses; the
API resource runs the listener in a process of its own that asks the daemon over its control socket."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from haoscar.errors import UserError
from haoscar.events import EventBus
from haoscar.ha.api import call_api, ensure_token, read_token, start_api
from haoscar.ha.control import control_path, serve_control
from haoscar.ha.resources import ResourceGroup
from haoscar.ha.services import ServiceEnv, build_service
from haoscar.spec.models import HA, Service
from haoscar.tlsca import ensure_node_cert, server_context


class Daemon:
    """A provider as the HA daemon gives it: status plus the three role changes."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def status(self) -> dict[str, Any]:
        return {"node": "head1", "role": "active", "state": "healthy"}

    async def switchover(self) -> dict[str, str]:
        self.calls.append("switchover")
        return {"to": "head2"}

    async def failback(self) -> None:
        self.calls.append("failback")
        raise UserError("head1 is already active; failback moves the role back to the primary")

    async def takeover(self, force: bool) -> dict[str, bool]:
        self.calls.append(f"takeover force={force}")
        return {"forced": force}

    async def control(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's handler as the daemon's: the status, or a switchover."""
        if op == "status":
            return self.status()
        return {"ok": True, "result": await self.switchover()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


def tls(cluster_ca: Path) -> ssl.SSLContext:
    return server_context(ensure_node_cert(cluster_ca, "head1", ["127.0.0.1"]))


def test_ensure_token_creates_a_0600_file_once(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "api.token"
    token = ensure_token(path)
    assert len(token) >= 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert ensure_token(path) == token
    assert read_token(path) == token


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_token_file_others_can_read_is_refused(tmp_path: Path, mode: int, cluster_ca: Path) -> None:
    path = tmp_path / "api.token"
    ensure_token(path)
    path.chmod(mode)

    async def scenario() -> None:
        with pytest.raises(UserError, match=f"has mode 0{mode:o}, readable by others; run `chmod 600 {path}`"):
            await start_api(["127.0.0.1"], free_port(), path, Daemon(), tls=tls(cluster_ca))

    run(scenario)


def test_wildcard_and_missing_addresses_are_refused(tmp_path: Path, cluster_ca: Path) -> None:
    path = tmp_path / "api.token"
    ensure_token(path)

    async def scenario() -> None:
        with pytest.raises(UserError, match="would listen on every interface"):
            await start_api(["0.0.0.0"], free_port(), path, Daemon(), tls=tls(cluster_ca))
        with pytest.raises(UserError, match="at least one of the head's own addresses"):
            await start_api([], free_port(), path, Daemon(), tls=tls(cluster_ca))
        with pytest.raises(UserError, match="does not exist"):
            await start_api(["127.0.0.1"], free_port(), tmp_path / "missing.token", Daemon(), tls=tls(cluster_ca))

    run(scenario)


def test_reads_are_open_and_writes_need_the_token(tmp_path: Path, cluster_ca: Path) -> None:
    path = tmp_path / "api.token"
    token = ensure_token(path)
    daemon = Daemon()
    port = free_port()

    async def scenario() -> None:
        runner = await start_api(["127.0.0.1"], port, path, daemon, tls=tls(cluster_ca))
        try:

            def call(action: str, tok: str | None = None, **body: Any) -> tuple[int, dict[str, Any]]:
                return call_api("127.0.0.1", port, action, tok, 5.0, ca_file=cluster_ca / "ca.crt", **body)

            assert await asyncio.to_thread(call, "status") == (
                200,
                {"node": "head1", "role": "active", "state": "healthy"},
            )
            status, body = await asyncio.to_thread(call, "switchover")
            assert status == 401 and "Authorization: Bearer" in body["error"]
            status, body = await asyncio.to_thread(call, "switchover", "not-the-token-at-all")
            assert status == 403 and body["error"] == "the token is wrong"
            assert daemon.calls == []
            assert await asyncio.to_thread(call, "switchover", token) == (
                200,
                {"ok": True, "action": "switchover", "result": {"to": "head2"}},
            )
            status, body = await asyncio.to_thread(call, "takeover", token, force=True)
            assert (status, body["result"]) == (200, {"forced": True})
            status, body = await asyncio.to_thread(call, "failback", token)
            assert status == 409 and "already active" in body["error"]
        finally:
            await runner.close()

    run(scenario)
    assert daemon.calls == ["switchover", "takeover force=True", "failback"]


def test_it_listens_only_on_the_given_address(tmp_path: Path, cluster_ca: Path) -> None:
    path = tmp_path / "api.token"
    ensure_token(path)
    port = free_port()

    async def scenario() -> None:
        runner = await start_api(["127.0.0.1"], port, path, Daemon(), tls=tls(cluster_ca))
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            # 127.0.0.2 is this host too: a wildcard listener would answer there.
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.2", port)
        finally:
            await runner.close()

    run(scenario)


def test_status_api_service_serves_and_is_checked_over_https(tmp_path: Path) -> None:
    port = free_port()
    token_file = tmp_path / "etc" / "api.token"
    daemon = Daemon()

    async def scenario() -> None:
        bus = EventBus("head1")
        env = ServiceEnv(
            node="head1",
            state_dir=tmp_path,
            bus=bus,
            api_provider=daemon,
            ha_config=HA(api_token_file=str(token_file)),
        )
        server = await serve_control(control_path(tmp_path), daemon.control)
        group = ResourceGroup([build_service(Service(name="api", kind="status-api", port=port), env)], bus)
        await group.start()
        try:
            assert token_file.stat().st_mode & 0o777 == 0o600  # created on first start
            ca = tmp_path / "etc" / "tls" / "ca.crt"  # the cluster CA, made on first start too
            assert (tmp_path / "etc" / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
            status, body = await asyncio.to_thread(call_api, "127.0.0.1", port, "status", ca_file=ca)
            assert (status, body["role"]) == (200, "active")
            token = read_token(token_file)
            status, body = await asyncio.to_thread(call_api, "127.0.0.1", port, "switchover", token, ca_file=ca)
            assert (status, body["result"]) == (200, {"ok": True, "result": {"to": "head2"}})
            assert await group.services[0].check() is None
            api_pid = group.services[0].pid()
            assert api_pid is not None and api_pid != os.getpid()  # served by a process of its own
        finally:
            assert await group.stop() is True
            server.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await group.services[0].check() == "not started"

    run(scenario)
    assert daemon.calls == ["switchover"]


def test_a_token_file_that_is_a_link_or_another_users_file_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.write_text("a" * 32 + "\n")
    theirs.chmod(0o600)
    link = tmp_path / "api.token"
    link.symlink_to(theirs)
    with pytest.raises(UserError, match="cannot be opened"):
        read_token(link)  # a planted link is not followed, even to a well-formed token
    os.chown(theirs, 65534, 65534)
    with pytest.raises(UserError, match="belongs to uid 65534"):
        read_token(theirs)
