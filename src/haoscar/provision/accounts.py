"""Cluster-wide accounts (OSCAR's user management, docs/accounts.md): the rules for names and ids, the choice of
the next uid/gid, what the head's own account database holds, and the user's home on the export.

Ids come from one range for the whole cluster, kept in the cluster database (so the standby has them too):
``FIRST_ID``-``LAST_ID``, above Debian's system ids (0-999) and the ids ``adduser`` gives local accounts of one host
(from 1000), below Debian's reserved global range (60000-64999), systemd's dynamic users (61184-65519) and
``nobody`` (65534). An id the admin gives must lie in ``GIVEN_FIRST``-``LAST_ID``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

FIRST_ID = 2000
LAST_ID = 59999
GIVEN_FIRST = 1000
DEFAULT_SHELL = "/bin/bash"
DEFAULT_HOME_BASE = Path("/home")
SKEL = Path("/etc/skel")
KEY_NAME = "id_ed25519"

# What useradd and groupadd take on Debian without --badname: a lower-case letter or _, then lower-case letters,
# digits, _ and -, at most 32 characters (POSIX's portable user names, lower case).
NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
NAME_RULE = "a user or group name is 1-32 characters: a lower-case letter or _, then lower-case letters, digits, _, -"


def name_problem(name: str) -> str | None:
    """Why ``name`` is no valid user or group name, or None."""
    if NAME_RE.fullmatch(name) is None:
        return f"{name!r} is not a valid name: {NAME_RULE}"
    return None


def id_problem(value: int) -> str | None:
    """Why a given uid or gid cannot be used, or None."""
    if not GIVEN_FIRST <= value <= LAST_ID:
        return (
            f"{value} is outside {GIVEN_FIRST}-{LAST_ID} (system ids are below {GIVEN_FIRST}, Debian and systemd "
            f"reserve the ids above {LAST_ID})"
        )
    return None


def field_text_problem(text: str, what: str) -> str | None:
    """A passwd field may hold neither ``:`` nor a line break (it would split the entry)."""
    if ":" in text or "\n" in text or "\r" in text:
        return f"{text!r}: {what} may not contain ':' or a line break"
    if len(text) > 255:
        return f"{what} is {len(text)} characters long; keep it within 255"
    return None


def shell_problem(shell: str) -> str | None:
    """A login shell is an absolute path of an executable here (the nodes run the same Debian)."""
    problem = field_text_problem(shell, "a shell")
    if problem is not None:
        return problem
    if not shell.startswith("/") or " " in shell:
        return f"{shell!r} is not an absolute path such as {DEFAULT_SHELL}"
    if not (os.path.isfile(shell) and os.access(shell, os.X_OK)):
        return f"{shell!r} is no executable on this head"
    return None


def next_id(taken: Iterable[int], first: int = FIRST_ID, last: int = LAST_ID) -> int | None:
    """The id useradd would pick: one above the highest taken id of the range, else the lowest free one (ids of
    deleted users are reused last, so their old files are not handed to someone new while ids remain)."""
    used = {value for value in taken if first <= value <= last}
    top = max(used, default=first - 1) + 1
    if top <= last:
        return top
    return next((value for value in range(first, last + 1) if value not in used), None)


@dataclass(frozen=True)
class LocalAccounts:
    """The head's own account database (``getent passwd`` and ``getent group``): name -> id."""

    users: dict[str, int]
    groups: dict[str, int]

    def user_with_id(self, uid: int) -> str | None:
        return next((name for name, value in self.users.items() if value == uid), None)

    def group_with_id(self, gid: int) -> str | None:
        return next((name for name, value in self.groups.items() if value == gid), None)


def parse_getent(text: str) -> dict[str, int]:
    """``getent passwd`` or ``getent group`` output: each entry's name and its id (third field)."""
    entries: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            entries.setdefault(fields[0], int(fields[2]))
    return entries


@dataclass(frozen=True)
class Account:
    """One user as every host gets it: ``group`` is its primary group (``gid``)."""

    name: str
    uid: int
    gid: int
    group: str
    shell: str
    comment: str
    home: str


Keygen = Callable[[Path, str], None]
"""Makes an ed25519 key pair without a passphrase at the path, with the comment (``ssh-keygen``)."""


def _copy_skel(skel: Path, home: Path) -> None:
    if skel.is_dir():
        shutil.copytree(skel, home, symlinks=True, dirs_exist_ok=True)
    else:
        home.mkdir(parents=True, exist_ok=True)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for where, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(where, name), uid, gid)


def make_home(account: Account, keygen: Keygen, extra_keys: list[str], skel: Path = SKEL) -> list[str]:
    """The user's home on the export: /etc/skel's files, mode 0700, an ssh key pair in ~/.ssh (0600) whose public
    key (and ``extra_keys``) ~/.ssh/authorized_keys holds, everything owned by the user. A home that exists (kept by
    ``user delete --keep-home``) keeps its files and is given to the user; a key pair there is kept. Returns what
    was done, for the report."""
    home = Path(account.home)
    done = []
    if home.exists():
        done.append(f"kept the existing {home}")
    else:
        home.parent.mkdir(parents=True, exist_ok=True)
        _copy_skel(skel, home)
        done.append(f"created {home} from {skel}")
    os.chmod(home, 0o700)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    os.chmod(ssh, 0o700)
    key = ssh / KEY_NAME
    if not key.exists():
        keygen(key, f"{account.name}@cluster")
        done.append(f"made the key pair {key}")
    public = Path(f"{key}.pub").read_text().strip()
    authorized = ssh / "authorized_keys"
    have = authorized.read_text().splitlines() if authorized.exists() else []
    wanted = [line for line in [public, *extra_keys] if line.strip() and line.strip() not in have]
    if wanted or not authorized.exists():
        authorized.write_text("".join(f"{line}\n" for line in [*have, *wanted]))
    os.chmod(authorized, 0o600)
    os.chmod(key, 0o600)
    _chown_tree(home, account.uid, account.gid)
    return done


def remove_home(home: Path, base: Path) -> bool:
    """Delete a user's home, only when it is a directory right under the export's base (never the base, never a
    link out of it). Returns whether it was there."""
    if home.parent.resolve() != base.resolve() or home.is_symlink() or not home.is_dir():
        return False
    shutil.rmtree(home)
    return True
