"""The encrypted replication channel (``haoscar.tlspipe``): a real rsync client and ``rsync --server --daemon``
talking over mutual TLS with the cluster CA on loopback; a client without a certificate from that CA gets nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.tlsca import ensure_node_cert, init_cluster_tls


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    tls = tmp_path / "tls"
    init_cluster_tls(tls, {"head1": ["127.0.0.1"], "head2": ["127.0.0.1"]})
    dest = tmp_path / "dest"
    dest.mkdir()
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(
        f"use chroot = no\n[tree]\n    path = {dest}\n    read only = false\n    hosts allow = 127.0.0.1\n"
        + ("    uid = root\n    gid = root\n" if os.geteuid() == 0 else "")
    )
    port = free_port()
    serve = [sys.executable, "-m", "haoscar.tlspipe", "serve", f"--listen=127.0.0.1:{port}", "--allow=127.0.0.1"]
    serve += ["--tls-dir", str(tls), "--node", "head1", "--", "rsync", "--server", "--daemon", f"--config={conf}", "."]
    server = subprocess.Popen(
        serve,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        yield tls, port, dest
    finally:
        server.terminate()
        server.wait(10)


def rsh(tls: Path, port: int) -> str:
    return f"{sys.executable} -m haoscar.tlspipe connect --port {port} --tls-dir {tls} --node head2"


def test_rsync_daemon_protocol_over_mutual_tls(channel: tuple[Path, int, Path], tmp_path: Path) -> None:
    tls, port, dest = channel
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file.txt").write_text("replicated over TLS\n")
    (src / "big.bin").write_bytes(os.urandom(2_000_000))
    out = subprocess.run(
        ["rsync", "-a", "-e", rsh(tls, port), f"{src}/", "127.0.0.1::tree/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert (dest / "sub" / "file.txt").read_text() == "replicated over TLS\n"
    assert (dest / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


def test_a_client_without_a_cluster_certificate_gets_nothing(channel: tuple[Path, int, Path], tmp_path: Path) -> None:
    tls, port, dest = channel
    # An ARP spoofer on the link: it trusts the cluster CA (it is public) so it accepts the server, but its own
    # certificate comes from a CA of its own: the server refuses it during the handshake.
    stranger = tmp_path / "stranger"
    ensure_node_cert(stranger, "head2", ["127.0.0.1"])
    shutil.copyfile(tls / "ca.crt", stranger / "ca.crt")
    src = tmp_path / "src"
    src.mkdir()
    (src / "evil").write_text("x")
    out = subprocess.run(
        ["rsync", "-a", "-e", rsh(stranger, port), f"{src}/", "127.0.0.1::tree/"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert not (dest / "evil").exists()


def test_a_pull_through_the_channel_gets_every_byte(channel: tuple[Path, int, Path], tmp_path: Path) -> None:
    # A returning head pulls from the active one (catch-up): both directions busy at once on one TLS connection.
    tls, port, served = channel
    for i in range(20):
        (served / f"f{i}.bin").write_bytes(os.urandom(300_000))
    local = tmp_path / "local"
    local.mkdir()
    (local / "only-here").write_text("kept aside\n")
    out = subprocess.run(
        ["rsync", "-a", "--delete", "--backup", f"--backup-dir={tmp_path / 'aside'}", "-e", rsh(tls, port),
         "127.0.0.1::tree/", f"{local}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert all((local / f"f{i}.bin").read_bytes() == (served / f"f{i}.bin").read_bytes() for i in range(20))
    assert not (local / "only-here").exists() and (tmp_path / "aside" / "only-here").read_text() == "kept aside\n"
