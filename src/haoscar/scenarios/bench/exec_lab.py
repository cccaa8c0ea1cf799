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
from haoscar.provision.fanout import ssh_config_text
from haoscar.provision.node_groups import private_addresses
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


def plain_ssh_config(state_dir: Path) -> Path:
    """An ssh configuration for plain clush: the nodes' addresses, the cluster key and known hosts, nothing else
    (no multiplexing, OpenSSH's default key exchange), so it logs in as an admin's clush does."""
    with Env(state_dir=state_dir) as env, env.database.session(readonly=True) as session:
        addresses = private_addresses(session)
    path = state_dir / "bench-plain-ssh-config"
    path.write_text(ssh_config_text(ensure_identity(state_dir), addresses, None))
    return path


# Run inside a head: end every ssh master holding a connection to a node (the next run logs in afresh).
_STOP = (
    "import sys, pathlib; from haoscar.provision import fanout_mux as m; "
    "m.stop(m.control_dir(pathlib.Path(sys.argv[1])))"
)


def stop_masters(lab: Lab, host: str, state_dir: Path) -> None:
    """End the ssh masters of ``state_dir``'s configuration, from ``host`` (where they run)."""
    lab.exec(host, [sys.executable, "-c", _STOP, str(state_dir / "ssh")], timeout=120)


def sshd_host_key(lab: Lab, scratch: str = "exec-hostkey") -> Path:
    """One host key for every lab sshd (made once: 200 ssh-keygen runs would only cost time)."""
    setup = prepare_sshd(lab.dir / scratch, "127.0.0.1", [])
    return lab.dir / scratch / setup.host_key.name


def start_sshd(
    lab: Lab, host: str, authorized: list[str], host_key: Path, *, user_keys: bool = False
) -> subprocess.Popen[bytes]:
    """sshd on ``host``'s private address, root authorized with ``authorized``; with ``user_keys`` every user's
    own ~/.ssh/authorized_keys too (a node's sshd, for cluster accounts), in a mount namespace of sshd's own that is
    a slave of the host's (its later mounts, such as an NFS /home, still reach the logins)."""
    address = lab.host(host).address_on("private")
    assert address is not None, f"{host} has no private address"
    config_dir = lab.host_dir(host) / "etc/haoscar/sshd"
    config_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".pub"):
        shutil.copy2(f"{host_key}{suffix}", config_dir / f"{host_key.name}{suffix}")
    setup = prepare_sshd(config_dir, address, authorized, seen_as=SSHD_DIR)
    wrapper = _OWN_ROOT_HOME
    if user_keys:
        config = config_dir / setup.config.name
        config.write_text(
            config.read_text().replace(
                f"AuthorizedKeysFile {setup.authorized_keys}",
                f"AuthorizedKeysFile {setup.authorized_keys} .ssh/authorized_keys",
            )
        )
        wrapper = ["unshare", "--mount", "--propagation", "slave", *_OWN_ROOT_HOME]
    # sshd insists on its privilege separation directory, owned by root and not group/world writable.
    (lab.host_dir(host) / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    (config_dir / "root").mkdir(mode=0o700, exist_ok=True)
    return lab.popen(host, [*wrapper, *setup.argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_listening(lab: Lab, hosts: Sequence[str], probe_from: str = "head1", timeout: float = 60.0) -> list[str]:
    """Wait until every host's sshd accepts (probed from inside ``probe_from``); returns their addresses."""
    addresses = [str(lab.host(host).address_on("private")) for host in hosts]
    probe = [sys.executable, "-c", _PROBE, str(timeout), *addresses]
    missing = lab.exec(probe_from, probe, timeout=timeout + 30).stdout.split()
    if missing:
        raise RuntimeError(f"sshd did not listen within {timeout:g} s on {', '.join(missing)}")
    return addresses


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """End the sshds by their pids: SIGTERM, then SIGKILL what is still there after 5 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def lab_sshds(
    lab: Lab, hosts: Sequence[str], authorized: list[str], probe_from: str = "head1", timeout: float = 60.0
) -> Iterator[list[str]]:
    """sshd on every host of ``hosts`` (their private addresses); yields the addresses once all accept. Each sshd
    is ended by its pid when the block exits (and dies with the lab anyway)."""
    host_key = sshd_host_key(lab)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for host in hosts:
            procs.append(start_sshd(lab, host, authorized, host_key))
        yield wait_listening(lab, hosts, probe_from, timeout)
    finally:
        stop_all(procs)


def haoscar_in(
    lab: Lab, host: str, state_dir: Path, args: Sequence[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``haoscar --state-dir STATE ARGS`` run inside ``host`` (where the lab's networks are)."""
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(state_dir), *args]
    return lab.exec(host, argv, check=False, timeout=timeout)
