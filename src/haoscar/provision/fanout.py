"""One command (or one copy) on many nodes over ssh, through ClusterShell's Task and its ssh worker (what ``clush``
runs), never a fan-out of our own. The task runs in a small process of its own (``provision.fanout_run``).

ClusterShell names each target by its node name; the ssh client finds the node's private address, haoscar's key
and its known hosts file in ``STATE/ssh/config``, written here from the database (one ``Host`` block per node), so
the same file serves ``haoscar exec``, ``haoscar copy`` and an admin's ``clush -o "-F STATE/ssh/config"``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haoscar.fsutil import atomic_write
from haoscar.provision import fanout_mux
from haoscar.provision.sshkeys import SshIdentity

SSH_CONFIG = "config"
LOCAL_CONFIG = "config.local"  # the admin's own settings, read first (Include)
SSH_FAILED = 255  # what ssh exits with when it could not connect or log in (a command's own 255 reads the same)


@dataclass(frozen=True)
class Limits:
    """ClusterShell's knobs, as clush has them: how many ssh at once, seconds to connect, seconds for the command
    (0: no limit)."""

    fanout: int = 64
    connect_timeout: float = 10.0
    command_timeout: float = 0.0


@dataclass
class Outcome:
    """What one node did: its output lines, its exit status (None: none came back), whether it timed out."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    rc: int | None = None
    timed_out: bool = False


def ssh_config_text(identity: SshIdentity, addresses: Mapping[str, str], control: Path | None = None) -> str:
    """An ssh client configuration: the admin's overrides, each node's address, then haoscar's key, safe defaults
    and connection multiplexing (``fanout_mux``, sockets in ``control``) for every host."""
    local = identity.key.parent / LOCAL_CONFIG
    # ssh keeps the first value it reads for each option: what the admin sets in config.local wins over ours.
    head = f"# Written by haoscar from the cluster database; put your own settings in {local}\nInclude {local}\n"
    blocks = [f"Host {name}\n    HostName {address}\n" for name, address in sorted(addresses.items())]
    common = (
        "Host *\n"
        "    User root\n"
        f"    IdentityFile {identity.key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {identity.known_hosts}\n"
        # A host's key is learnt the first time, a changed one refused (a reinstalled node: ssh-keygen -R); no prompt.
        "    StrictHostKeyChecking accept-new\n"
        "    BatchMode yes\n"
        # OpenSSH's default key exchange is kept (post-quantum hybrid on OpenSSH 9, docs/exec.md#key-exchange): its
        # ~100 ms of CPU per login is paid once per node and ControlPersist period, not once per command.
        "    LogLevel ERROR\n"
    )
    return head + "".join(blocks) + common + fanout_mux.config_lines(control)


def write_ssh_config(identity: SshIdentity, addresses: Mapping[str, str]) -> Path:
    """``STATE/ssh/config`` beside the key, rewritten only when the database's nodes changed; the control socket
    directory is made (and its stale sockets removed) on the way."""
    control = fanout_mux.control_dir(identity.key.parent)
    fanout_mux.clean(control)
    path = identity.key.parent / SSH_CONFIG
    atomic_write(path, ssh_config_text(identity, addresses, control), mode=0o600, durable=False)
    return path


def ssh_options_for(config: Path) -> str:
    """The ssh options ClusterShell puts before its own: only our configuration file."""
    return f"-F {shlex.quote(str(config))}"


def _run(request: dict[str, Any], limits: Limits, config: Path) -> dict[str, Outcome]:
    """ClusterShell's task in ``provision.fanout_run``'s small process (why: that module's docstring)."""
    request |= {
        "fanout": limits.fanout,
        "connect_timeout": limits.connect_timeout,
        "command_timeout": limits.command_timeout,
        "ssh_options": ssh_options_for(config),
    }
    argv = [sys.executable, "-m", "haoscar.provision.fanout_run"]
    done = subprocess.run(argv, input=json.dumps(request).encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the ClusterShell run failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return {node: Outcome(**outcome) for node, outcome in json.loads(done.stdout).items()}


def run_shell(nodes: list[str], command: str, limits: Limits, config: Path) -> dict[str, Outcome]:
    """``command`` (a shell command line, as ssh takes it) on every node; stdout and stderr kept apart."""
    return _run({"op": "shell", "nodes": nodes, "command": command}, limits, config)


def run_copy(
    nodes: list[str], source: Path, dest: str, limits: Limits, config: Path, *, preserve: bool = False
) -> dict[str, Outcome]:
    """``source`` (a file or a directory) to ``dest`` on every node, by scp (ClusterShell's copy)."""
    request = {"op": "copy", "nodes": nodes, "source": str(source), "dest": dest, "preserve": preserve}
    return _run(request, limits, config)


def run_local(nodes: list[str], command: str, limits: Limits, config: Path) -> dict[str, Outcome]:
    """``command`` run here once per node, ``%h`` replaced by the node's name (ClusterShell's exec worker): a
    program that reaches the node itself, such as ``rsync -e "ssh -F CONFIG" ... %h:/``."""
    return _run({"op": "local", "nodes": nodes, "command": command}, limits, config)


LocalRunner = Callable[[list[str], str, Limits, Path], dict[str, Outcome]]
"""``run_local``'s shape (a test passes a stand-in)."""
