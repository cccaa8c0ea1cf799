"""``tlspipe connect`` writing what the server sends to its stdout the way rsync sets that up: a non-blocking socket
whose reader may be slower than the network (a busy receiver). Every byte arrives, or the client fails and says so;
it never stops early with exit 0 (a pull under load used to end in "connection unexpectedly closed")."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.tlsca import init_cluster_tls

PAYLOAD = bytes(range(256)) * 131072  # 32 MiB: more than every buffer between the server's command and the reader


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[list[str]]:
    """A ``tlspipe serve`` whose command writes PAYLOAD and exits; yields the ``tlspipe connect`` command line."""
    tls = tmp_path / "tls"
    init_cluster_tls(tls, {"head1": ["127.0.0.1"], "head2": ["127.0.0.1"]})
    port = free_port()
    payload = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 131072)"
    serve = [sys.executable, "-m", "haoscar.tlspipe", "serve", f"--listen=127.0.0.1:{port}", "--allow=127.0.0.1"]
    serve += ["--tls-dir", str(tls), "--node", "head1", "--", sys.executable, "-c", payload]
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        connect = [sys.executable, "-m", "haoscar.tlspipe", "connect", "--port", str(port), "--tls-dir", str(tls)]
        yield [*connect, "--node", "head2", "127.0.0.1"]
    finally:
        server.terminate()
        server.wait(10)


def start_client(command: list[str]) -> tuple[socket.socket, subprocess.Popen[str]]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # what rsync hands its remote shell as stdout (only stdin is made blocking)
    client = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=theirs.fileno(), stderr=subprocess.PIPE, text=True
    )
    theirs.close()
    return ours, client


def test_a_slow_reader_behind_a_non_blocking_stdout_gets_every_byte(sender: list[str]) -> None:
    ours, client = start_client(sender)
    with ours:
        time.sleep(1.0)  # a busy receiver: the client's stdout fills up long before the first read
        chunks = []
        while chunk := ours.recv(1 << 20):
            chunks.append(chunk)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 0, stderr
    received = b"".join(chunks)
    assert len(received) == len(PAYLOAD) and received == PAYLOAD


def test_a_reader_that_goes_away_mid_stream_is_a_failure_not_a_success(sender: list[str]) -> None:
    ours, client = start_client(sender)
    with ours:
        assert ours.recv(65536)  # the transfer has begun
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 10  # rsync's "error in socket IO"
    assert "tlspipe: connection with 127.0.0.1:" in stderr and "broken: writing to rsync" in stderr
