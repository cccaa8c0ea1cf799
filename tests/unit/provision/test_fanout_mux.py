"""The parallel shell's ssh multiplexing: where the control sockets live (root's, 0700; none for a state directory
too long for a socket path), what the generated configuration says, and the removal of stale sockets while a live
master's socket stays."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.provision import fanout, fanout_mux
from haoscar.provision.sshkeys import SshIdentity


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # tmp_path itself is too long for a control socket path: a short directory of its own under /tmp.
    path = Path(tempfile.mkdtemp(prefix="mx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sockets_live_in_a_private_directory_beside_the_key(short_dir: Path) -> None:
    ssh_dir = short_dir / "ssh"
    ssh_dir.mkdir(mode=0o700)
    control = fanout_mux.control_dir(ssh_dir)
    assert control == ssh_dir / "mux"
    assert control.stat().st_mode & 0o777 == 0o700


def test_a_state_directory_too_long_for_a_socket_path_runs_without_multiplexing(tmp_path: Path) -> None:
    ssh_dir = tmp_path / ("x" * 40) / "ssh"
    assert fanout_mux.control_dir(ssh_dir) is None
    assert not (ssh_dir / "mux").exists()
    assert fanout_mux.config_lines(None) == "    ControlMaster no\n"


def test_the_configuration_multiplexes_and_reads_the_admins_file_first(short_dir: Path) -> None:
    identity = SshIdentity(short_dir / "ssh" / "id_ed25519", short_dir / "ssh" / "known_hosts")
    text = fanout.ssh_config_text(identity, {"node01": "198.18.0.101"}, short_dir / "ssh" / "mux")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[1] == f"Include {short_dir}/ssh/config.local"  # before any Host: the admin's values win
    assert lines.index("Host node01") > 1 and "HostName 198.18.0.101" in lines
    for wanted in ("ControlMaster auto", f"ControlPath {short_dir}/ssh/mux/%C", "ControlPersist 600"):
        assert wanted in lines
    assert "ServerAliveInterval 3" in lines and "ServerAliveCountMax 2" in lines
    assert not any(line.startswith("KexAlgorithms") for line in lines)  # OpenSSH's default key exchange is kept


def test_stale_sockets_go_and_a_live_masters_socket_stays(short_dir: Path) -> None:
    control = short_dir / "mux"
    control.mkdir(mode=0o700)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(control / "a"))
    live.listen()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(control / "b"))
    stale.close()  # the file stays, nothing listens: a master killed, or a reboot
    (control / "c.0123456789abcdef").write_text("")  # not a socket (left by a crash)
    try:
        assert fanout_mux.clean(control) == ["b", "c.0123456789abcdef"]
        assert [p.name for p in fanout_mux.masters(control)] == ["a"]
    finally:
        live.close()
