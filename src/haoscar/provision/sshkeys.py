"""haoscar's own ssh identity and a private sshd for golden clients.

haoscar talks to golden clients with a dedicated key pair under its state directory, so a fetch never depends on
(or changes) the administrator's ~/.ssh; the known hosts file lives there too. ``SshdSetup`` writes a self-contained
sshd configuration (its own host key, authorized keys file and pid file) so that an sshd can run inside a lab host
next to, and independently of, any system sshd.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write

SSH_CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class SshIdentity:
    key: Path
    known_hosts: Path

    @property
    def public_key(self) -> str:
        return Path(f"{self.key}.pub").read_text().strip()

    def ssh_argv(self, port: int = 22, connect_timeout: int = SSH_CONNECT_TIMEOUT_S) -> list[str]:
        """``ssh`` with this identity, never prompting (BatchMode), giving up on a dead host after a few
        seconds, and accepting a host key only the first time it is seen."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "LogLevel=ERROR",
        ]

    def rsync_rsh(self, port: int = 22, connect_timeout: int = SSH_CONNECT_TIMEOUT_S) -> str:
        """The ``rsync -e`` value (one shell-quoted string)."""
        return shlex.join(self.ssh_argv(port, connect_timeout))


def _keygen(path: Path, comment: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise UserError(f"ssh-keygen could not create {path}: {result.stderr.strip()}")


def ensure_identity(state_dir: Path) -> SshIdentity:
    """The state directory's key pair (``ssh/id_ed25519``), created on first use."""
    ssh_dir = state_dir / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        # Under a lock, checked again inside it: callers asking at the same moment (two nodes' install plans in
        # the boot server, a command beside it) must all end with the one pair, never a half-written one.
        with open(ssh_dir / ".keygen.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not key.exists():
                _keygen(key, "haoscar")
    return SshIdentity(key=key, known_hosts=ssh_dir / "known_hosts")


@dataclass(frozen=True)
class SshdSetup:
    """Files of a private sshd: start it with ``argv`` (``sshd -D -f CONFIG``)."""

    config: Path
    host_key: Path
    authorized_keys: Path
    pid_file: Path

    @property
    def argv(self) -> list[str]:
        return ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)]


def render_sshd_config(setup: SshdSetup, listen: str, port: int = 22) -> str:
    # No PAM: lab hosts share the machine's /etc, and a PAM session would touch the machine's logins.
    return "\n".join(
        [
            f"ListenAddress {listen}",
            f"Port {port}",
            f"HostKey {setup.host_key}",
            f"AuthorizedKeysFile {setup.authorized_keys}",
            f"PidFile {setup.pid_file}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes yes",
            "X11Forwarding no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def prepare_sshd(
    config_dir: Path, listen: str, authorized: list[str], port: int = 22, seen_as: Path | None = None
) -> SshdSetup:
    """Write a host key, an authorized keys file and an sshd config under ``config_dir``.

    ``seen_as`` is where sshd will find ``config_dir`` when it differs from where it is written, e.g. a lab
    host's private /etc/haoscar written from outside the host. Returns the paths as sshd sees them.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    inside = seen_as or config_dir
    setup = SshdSetup(
        config=inside / "sshd_config",
        host_key=inside / "ssh_host_ed25519_key",
        authorized_keys=inside / "authorized_keys",
        pid_file=inside / "sshd.pid",
    )
    if not (config_dir / setup.host_key.name).exists():
        _keygen(config_dir / setup.host_key.name, f"haoscar-sshd@{listen}")
    keys = "".join(f"{key.strip()}\n" for key in authorized)
    atomic_write(config_dir / setup.authorized_keys.name, keys, mode=0o600)
    atomic_write(config_dir / setup.config.name, render_sshd_config(setup, listen, port), mode=0o600)
    return setup
