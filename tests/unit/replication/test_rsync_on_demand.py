"""The active head's read-only file channel runs on demand (``RsyncDaemon.start(key, writable=False)``): no server
process while nobody pulls, the rsync daemon's greeting over mutual TLS as soon as a peer connects, the process gone
again after its idle time and started anew by the next connection; the standby's writable channel stays up."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from haoscar.replication.config import ReplConfig, Tree
from haoscar.replication.rsync import RsyncDaemon
from haoscar.tlsca import client_context, init_cluster_tls, node_files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path) -> ReplConfig:
    tls = tmp_path / "tls"
    init_cluster_tls(tls, {"head1": ["127.0.0.1"], "head2": ["127.0.0.1"]})
    tree = tmp_path / "home"
    tree.mkdir()
    state = tmp_path / "state"
    (state / "replication").mkdir(parents=True)
    loopback = IPv4Address("127.0.0.1")
    return ReplConfig(
        node="head1", peer="head2", local_ip=loopback, peer_ip=loopback, db_port=1, rsync_port=free_port(),
        trees=(Tree(tree, (), "home"),), state_dir=state, key_file=state / "ha.key", batch_s=0.05,
        full_pass_s=600, lag_alert_s=5, ack_timeout_s=1.0, tls_dir=tls,
    )  # fmt: skip


async def greeting(cfg: ReplConfig) -> bytes:
    """What the channel says first to the peer (head2's certificate): rsync's daemon greeting."""
    ctx = client_context(cfg.tls / "ca.crt", node_files(cfg.tls, "head2"))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", cfg.rsync_port, ssl=ctx, server_hostname="127.0.0.1"), 30
    )
    try:
        return await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_the_read_only_channel_runs_only_while_a_peer_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path)
    monkeypatch.setattr(RsyncDaemon, "ON_DEMAND_IDLE_S", 0.5)
    daemon = RsyncDaemon(cfg)

    async def scenario() -> None:
        await daemon.start(b"k" * 32, writable=False)
        try:
            assert daemon.proc is None  # idle: no server process, only the socket
            assert (await greeting(cfg)).startswith(b"@RSYNCD:")
            first = daemon.proc
            assert first is not None
            await until(lambda: first.returncode is not None)  # ended after its idle time
            assert (await greeting(cfg)).startswith(b"@RSYNCD:")  # the next connection starts it again
            assert daemon.proc is not None and daemon.proc is not first
        finally:
            await daemon.stop()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", cfg.rsync_port)

    asyncio.run(scenario())


def test_a_peer_without_the_cluster_ca_gets_no_rsync(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    other = tmp_path / "other"
    init_cluster_tls(other, {"head2": ["127.0.0.1"]})
    daemon = RsyncDaemon(cfg)

    async def scenario() -> None:
        await daemon.start(b"k" * 32, writable=False)
        try:
            ctx = client_context(cfg.tls / "ca.crt", node_files(other, "head2"))
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", cfg.rsync_port, ssl=ctx, server_hostname="127.0.0.1"
                )
                data = await asyncio.wait_for(reader.readline(), 30)
                writer.close()
                if not data:
                    raise ConnectionError("closed without a greeting")
        finally:
            await daemon.stop()

    asyncio.run(scenario())


def test_the_writable_channel_of_the_standby_runs_all_the_time(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    daemon = RsyncDaemon(cfg)

    async def scenario() -> None:
        await daemon.start(b"k" * 32, writable=True)
        try:
            assert daemon.proc is not None and daemon.proc.returncode is None
        finally:
            await daemon.stop()

    asyncio.run(scenario())
