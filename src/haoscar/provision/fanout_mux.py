"""OpenSSH connection multiplexing for the parallel shell (``ControlMaster auto`` + ``ControlPersist``, what Ansible
does by default): the first ``haoscar exec`` to a node logs in (key exchange and authentication, ~100 ms of CPU on
each end with OpenSSH's post-quantum default) and leaves that authenticated connection open for
``PERSIST_S``; every ssh to the node until then (the next ``exec``, ``copy``, ``node sync``'s rsync, an admin's
``clush -o "-F STATE/ssh/config"``) is a new session on it: no key exchange, no login.

Where the control sockets live: ``STATE/ssh/mux`` (``STATE/ssh`` is root's, 0700, beside the cluster key: whoever
can connect to a socket runs commands as root on that node, as whoever can read the key). A socket's path must fit
in ``sun_path`` together with the hash ssh names it by (``%C``, 40 characters) and the temporary suffix ssh binds
first (17): a state directory longer than 49 characters (a test's temporary directory; ``/var/lib/haoscar`` is 16)
runs without multiplexing, every ssh a login of its own, rather than keep its sockets anywhere else.

Stale sockets (a master killed, a state directory that survived a reboot) are removed before each run
(``clean``); ``stop`` ends every master (``ssh -O exit``), which the bench uses to measure a cold run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import subprocess
from pathlib import Path

PERSIST_S = 600  # an admin's working session: exec after exec within 10 minutes reuses the connections
# A master whose node died (a power loss sends no RST) is noticed by these keepalives within 6-9 s: a session on it
# then falls back to connecting afresh (its connect timeout), so the dead node is reported unreachable.
ALIVE_INTERVAL_S, ALIVE_COUNT = 3, 2
MUX_DIR = "mux"
SUN_PATH_MAX = 107  # bytes, without the terminating NUL
# What ssh adds to the directory: "/" + %C (40 hex) for the socket, "." + 16 characters for the name it binds first.
_SSH_SUFFIX = 1 + 40 + 17


def _private_dir(path: Path) -> bool:
    """Make ``path`` (parents included) a directory of ours, mode 0700, never through a symbolic link."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False
    if info.st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return True


def control_dir(ssh_dir: Path) -> Path | None:
    """Where the control sockets of ``ssh_dir``'s configuration live (module docstring); None: no multiplexing."""
    own = ssh_dir / MUX_DIR
    if len(os.fsencode(own)) + _SSH_SUFFIX > SUN_PATH_MAX:
        return None
    return own if _private_dir(own) else None


def config_lines(directory: Path | None) -> str:
    """The ``Host *`` lines that turn multiplexing on (nothing when there is no control directory)."""
    if directory is None:
        return "    ControlMaster no\n"
    return (
        "    ControlMaster auto\n"
        f"    ControlPath {directory}/%C\n"
        f"    ControlPersist {PERSIST_S}\n"
        f"    ServerAliveInterval {ALIVE_INTERVAL_S}\n"
        f"    ServerAliveCountMax {ALIVE_COUNT}\n"
    )


def _alive(path: Path) -> bool:
    """Whether a master listens on the socket ``path`` (a refused connection: its master is gone)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)
    return True


def masters(directory: Path) -> list[Path]:
    """The control sockets in ``directory`` (live or stale)."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(p for p in directory.iterdir() if stat.S_ISSOCK(p.lstat().st_mode))
    return []


def clean(directory: Path | None) -> list[str]:
    """Remove stale sockets (no master behind them) and anything else that is not a socket; returns their names."""
    if directory is None:
        return []
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(directory.iterdir()):
            is_socket = stat.S_ISSOCK(path.lstat().st_mode)
            # ssh binds "NAME.XXXXXXXXXXXXXXXX" first and links it to NAME: a live one is a master starting now.
            if (is_socket and _alive(path)) or (not is_socket and path.is_dir()):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


def stop(directory: Path | None) -> int:
    """End every master of ``directory`` (``ssh -O exit``, all at once); returns how many were asked to."""
    if directory is None:
        return 0
    procs = [
        subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={path}", "-O", "exit", "haoscar-mux"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for path in masters(directory)
    ]
    for proc in procs:
        proc.wait()
    clean(directory)
    return len(procs)
