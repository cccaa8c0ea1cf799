"""The API's listener against strangers: connection caps, a deadline for a request that trickles in, size limits,
and TLS pinned to the cluster CA (another CA's certificate is refused; plain HTTP to the TLS port gets nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from haoscar.ha.api import call_api, ensure_token, start_api, start_status_listener
from haoscar.ha.httpserve import Limits
from haoscar.tlsca import client_context, ensure_node_cert, server_context, tls_bundle


class Head:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def status(self) -> dict[str, Any]:
        return {"node": "head1", "state": "active"}

    async def switchover(self) -> dict[str, str]:
        self.calls.append("switchover")
        return {"to": "head2"}

    async def failback(self) -> None:
        self.calls.append("failback")

    async def takeover(self, force: bool) -> None:
        self.calls.append("takeover")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


async def closed_by_server(reader: asyncio.StreamReader, within: float = 20.0) -> bool:
    """True when the server closes the connection (EOF or reset) without sending a byte."""
    try:
        data = await asyncio.wait_for(reader.read(1), within)
    except ConnectionResetError:
        return True
    return data == b""


async def status_code(port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split(b" ", 2)[1])


def test_connections_over_the_per_client_cap_are_closed_at_once_and_idle_ones_time_out() -> None:
    port = free_port()
    limits = Limits(max_connections=10, per_client=3, read_timeout=1.0)

    async def scenario() -> None:
        listener = await start_status_listener(["127.0.0.1"], port, Head(), limits=limits)
        try:
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0.2)
            assert listener.server.active == 3
            reader, _ = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_by_server(reader, 5.0)  # the fourth from this address: closed, nothing said
            assert listener.server.counters.refused_cap >= 1
            # The three idle ones never sent a request: closed by the server after the read deadline.
            assert all([await closed_by_server(r) for r, _ in idle])
            assert listener.server.active == 0
            assert await status_code(port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n") == 200
        finally:
            await listener.close()

    run(scenario)


def test_a_request_head_that_trickles_in_is_cut_off() -> None:
    port = free_port()

    async def scenario() -> None:
        listener = await start_status_listener(["127.0.0.1"], port, Head(), limits=Limits(read_timeout=1.0))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            closed = asyncio.ensure_future(closed_by_server(reader))
            for piece in (b"GET /sta", b"tus HTTP/1.1\r\n", b"X-a: 1\r\n", b"X-b: 2\r\n", b"X-c: 3\r\n"):
                if closed.done():
                    break
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.4)
            assert await closed
            assert listener.server.counters.timed_out == 1
        finally:
            await listener.close()

    run(scenario)


def test_oversized_heads_and_bodies_are_refused(tmp_path: Path, cluster_ca: Path) -> None:
    port, api_port = free_port(), free_port()
    token_file = tmp_path / "api.token"
    token = ensure_token(token_file)
    head = Head()

    async def scenario() -> None:
        listener = await start_status_listener(["127.0.0.1"], port, head)
        tls = server_context(ensure_node_cert(cluster_ca, "head1", ["127.0.0.1"]))
        api = await start_api(["127.0.0.1"], api_port, token_file, head, tls=tls)
        try:
            huge = b"GET /status HTTP/1.1\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
            assert await status_code(port, huge) == 431
            assert await status_code(port, b"GET /other HTTP/1.1\r\n\r\n") == 404
            assert await status_code(port, b"POST /switchover HTTP/1.1\r\n\r\n") == 404  # read-only listener
            status, body = await asyncio.to_thread(
                call_api, "127.0.0.1", api_port, "takeover", token, ca_file=cluster_ca / "ca.crt", pad="x" * 8000
            )
            assert status == 413 and "4096 bytes at most" in body["error"]
        finally:
            await listener.close()
            await api.close()

    run(scenario)
    assert head.calls == []


def test_tls_is_pinned_to_the_cluster_ca_and_plain_http_gets_nothing(tmp_path: Path, cluster_ca: Path) -> None:
    port = free_port()
    token_file = tmp_path / "api.token"
    token = ensure_token(token_file)
    other_ca = tmp_path / "other"  # a CA of its own, as a stranger's server or client would have
    ensure_node_cert(other_ca, "head1", ["127.0.0.1"])
    head = Head()

    async def scenario() -> None:
        tls = server_context(ensure_node_cert(cluster_ca, "head1", ["127.0.0.1"]))
        api = await start_api(["127.0.0.1"], port, token_file, head, tls=tls)
        try:
            # A client that trusts another CA refuses this server before it sends anything (so no token).
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.to_thread(call_api, "127.0.0.1", port, "switchover", token, ca_file=other_ca / "ca.crt")
            # The system's CAs are not trusted either: only the pinned one.
            assert client_context(cluster_ca / "ca.crt").cert_store_stats()["x509_ca"] == 1
            # Plain HTTP to the TLS port: the connection is dropped, not a byte of HTTP comes back.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"POST /switchover HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            await writer.drain()
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                answer = await asyncio.wait_for(reader.read(), 10)
            assert not answer.startswith(b"HTTP/")
            assert await asyncio.to_thread(
                call_api, "127.0.0.1", port, "switchover", token, ca_file=cluster_ca / "ca.crt"
            ) == (200, {"ok": True, "action": "switchover", "result": {"to": "head2"}})
        finally:
            await api.close()

    run(scenario)
    assert head.calls == ["switchover"]


def test_a_certificate_for_another_address_is_refused(tmp_path: Path, cluster_ca: Path) -> None:
    port = free_port()
    token_file = tmp_path / "api.token"
    ensure_token(token_file)

    async def scenario() -> None:
        # Signed by the cluster CA, but for another head's address: a client asking 127.0.0.1 refuses it.
        tls = server_context(ensure_node_cert(cluster_ca, "head2", ["198.18.0.2"]))
        api = await start_api(["127.0.0.1"], port, token_file, Head(), tls=tls)
        try:
            with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
                await asyncio.to_thread(call_api, "127.0.0.1", port, "status", ca_file=cluster_ca / "ca.crt")
        finally:
            await api.close()

    run(scenario)


def test_the_cluster_ca_key_and_certificates_have_safe_modes(cluster_ca: Path) -> None:
    assert cluster_ca.stat().st_mode & 0o777 == 0o700
    assert (cluster_ca / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (cluster_ca / "head1.key").stat().st_mode & 0o777 == 0o600
    assert (cluster_ca / "ca.crt").stat().st_mode & 0o777 == 0o644


def test_the_set_up_bundle_is_stable_and_pins_both_heads() -> None:
    heads = {"head1": ["198.18.0.1", "198.19.0.11"], "head2": ["198.18.0.2", "198.19.0.12"]}
    first = tls_bundle(heads)
    assert set(first.files) == {"head1", "head2"}
    assert first.files["head1"]["head1.key"][1] == 0o600 and first.files["head2"]["ca.crt"][0] == first.ca_crt
    existing = {h: (f[f"{h}.crt"][0], f[f"{h}.key"][0]) for h, f in first.files.items()}
    again = tls_bundle(heads, (first.ca_crt, first.ca_key), existing)
    assert again == first  # a second set-up run rewrites nothing
    moved = tls_bundle({**heads, "head2": ["198.18.0.22"]}, (first.ca_crt, first.ca_key), existing)
    assert moved.files["head1"] == first.files["head1"]
    assert moved.files["head2"]["head2.crt"] != first.files["head2"]["head2.crt"]  # reissued for its new address
