"""A lab for the parallel shell: compute hosts each running a private sshd that authorizes haoscar's cluster key,
and a state directory whose database holds the lab's nodes, so ``haoscar exec`` (run inside a head) reaches them
at their private addresses. Used by ``tests/lab/test_exec.py`` and ``haoscar bench exec``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.lab.lab import Lab
from haoscar.provision.sshkeys import ensure_identity, prepare_sshd
from haoscar.scenarios.bench.lab import synthetic_spec
from haoscar.spec import ClusterSpec
from haoscar.spec.models import Image

SSHD_DIR = Path("/etc/haoscar/sshd")  # inside each host: its private /etc/haoscar

# Run inside a head: wait until every address accepts on port 22 (one process instead of a probe per host).
_PROBE = """
import socket, sys, time
waiting, deadline = set(sys.argv[2:]), time.monotonic() + float(sys.argv[1])
while waiting and time.monotonic() < deadline:
    for address in sorted(waiting):
        try:
            socket.create_connection((address, 22), timeout=0.5).close()
            waiting.discard(address)
        except OSError:
            pass
    if waiting:
        time.sleep(0.05)
print(" ".join(sorted(waiting)))
"""


# Lab hosts share the machine's /root, and bash started by sshd reads ~/.bashrc even for `ssh host hostname`: this
# machine's runs `pyenv init` there, ~1 s of forks per login, which a compute node's root does not have. So each
# sshd host gets an empty root home of its own, bound in the host's private mount namespace only (propagation is
# private: the machine's /root is untouched), before sshd starts.
_OWN_ROOT_HOME = ["/bin/sh", "-c", f'mount --bind {SSHD_DIR}/root /root && exec "$0" "$@"']


def exec_lab_spec(nodes: int) -> ClusterSpec:
    """Two heads, a witness, a user host and ``nodes`` compute hosts ``node001``... from the image ``img``."""
    spec = synthetic_spec(nodes + 4)
    return spec.model_copy(update={"images": [Image(name="img", source="debootstrap:bookworm")]})


def prepare_state(state_dir: Path, spec: ClusterSpec) -> str:
    """The spec's nodes in ``state_dir``'s database and haoscar's key pair there; returns the public key."""
    with Env(state_dir=state_dir) as env:
        apply_spec(env.database, spec)
    return ensure_identity(state_dir).public_key


def _host_key(lab: Lab) -> Path:
    """One host key for every lab sshd (made once: 200 ssh-keygen runs would only cost time)."""
    scratch = lab.dir / "exec-hostkey"
    setup = prepare_sshd(scratch, "127.0.0.1", [])
    return scratch / setup.host_key.name


def _start_one(lab: Lab, host: str, authorized: list[str], host_key: Path) -> subprocess.Popen[bytes]:
    address = lab.host(host).address_on("private")
    assert address is not None, f"{host} has no private address"
    config_dir = lab.host_dir(host) / "etc/haoscar/sshd"
    config_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".pub"):
        shutil.copy2(f"{host_key}{suffix}", config_dir / f"{host_key.name}{suffix}")
    setup = prepare_sshd(config_dir, address, authorized, seen_as=SSHD_DIR)
    # sshd insists on its privilege separation directory, owned by root and not group/world writable.
    (lab.host_dir(host) / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    (config_dir / "root").mkdir(mode=0o700, exist_ok=True)
    return lab.popen(host, [*_OWN_ROOT_HOME, *setup.argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def lab_sshds(
    lab: Lab, hosts: Sequence[str], authorized: list[str], probe_from: str = "head1", timeout: float = 60.0
) -> Iterator[list[str]]:
    """sshd on every host of ``hosts`` (their private addresses); yields the addresses once all accept. Each sshd
    is ended by its pid when the block exits (and dies with the lab anyway)."""
    host_key = _host_key(lab)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for host in hosts:
            procs.append(_start_one(lab, host, authorized, host_key))
        addresses = [str(lab.host(host).address_on("private")) for host in hosts]
        probe = [sys.executable, "-c", _PROBE, str(timeout), *addresses]
        missing = lab.exec(probe_from, probe, timeout=timeout + 30).stdout.split()
        if missing:
            raise RuntimeError(f"sshd did not listen within {timeout:g} s on {', '.join(missing)}")
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def haoscar_in(
    lab: Lab, host: str, state_dir: Path, args: Sequence[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``haoscar --state-dir STATE ARGS`` run inside ``host`` (where the lab's networks are)."""
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(state_dir), *args]
    return lab.exec(host, argv, check=False, timeout=timeout)
