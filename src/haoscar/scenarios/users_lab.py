"""A lab for cluster accounts (``tests/lab/test_users.py``): both heads and the compute hosts run an sshd that
authorizes the cluster key for root and a user's own ``~/.ssh/authorized_keys``, as a node's sshd does, so
``user add`` reaches every host and a user can log in from node to node.

Lab hosts are copy-on-write for /etc and /root (docs/lab.md), so the accounts the sync adds stay in each host.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from haoscar.lab.lab import Lab
from haoscar.scenarios.bench import exec_lab


def start_sshd(lab: Lab, host: str, authorized: list[str], host_key: Path) -> subprocess.Popen[bytes]:
    """sshd on ``host``'s private address: root with ``authorized``, every user with its ~/.ssh/authorized_keys."""
    return exec_lab.start_sshd(lab, host, authorized, host_key, user_keys=True)


def _host_key(lab: Lab) -> Path:
    return exec_lab.sshd_host_key(lab, "users-hostkey")


@contextmanager
def user_sshds(lab: Lab, hosts: Sequence[str], authorized: list[str]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """sshd on every host of ``hosts``; yields them by host (``restart`` one after a crash with ``start_sshd``).
    Each is ended by its pid when the block exits (and dies with the lab anyway)."""
    host_key = _host_key(lab)
    procs = {host: start_sshd(lab, host, authorized, host_key) for host in hosts}
    try:
        exec_lab.wait_listening(lab, hosts, timeout=30.0)
        yield procs
    finally:
        exec_lab.stop_all(list(procs.values()))


def restart_sshd(lab: Lab, procs: dict[str, subprocess.Popen[bytes]], host: str, authorized: list[str]) -> None:
    """After ``lab.restore(host)``: its sshd again (the crash killed it), the same host key."""
    old = procs[host]
    if old.poll() is None:
        old.kill()
    old.wait()
    procs[host] = start_sshd(lab, host, authorized, _host_key(lab))
    exec_lab.wait_listening(lab, [host], timeout=30.0)


def copy_home(lab: Lab, source: str, targets: Sequence[str], name: str) -> None:
    """A user's home from ``source``'s /home to the others' (owners and modes kept), standing in for the NFS mount
    compute nodes have of the head's /home."""
    home = lab.host_dir(source) / "home" / name
    for target in targets:
        dest = lab.host_dir(target) / "home"
        subprocess.run(["cp", "-a", str(home), str(dest)], check=True)
