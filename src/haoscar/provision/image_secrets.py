"""What never enters an image: the one exclusion list for fetches, and the scan every new version passes.

An image fetched from a head node (``serverimage``, the standby's clone) would otherwise carry haoscar's
secrets: its ssh key, the cluster database, the HA key, the API token, rsync secrets, fence credentials in
``cluster.yaml``, the head's ssh host keys, users' homes and root's. ``SECRET_EXCLUDES`` keeps them out of every
fetch (anchored at the source root; ``DIR/*`` keeps the directory itself as an empty mount point), and
``lock_shadow`` replaces every password hash a fetched ``/etc/shadow`` holds by ``!*`` (locked).

``scan`` then looks at every new version, however it was made (fetch, build, import), and refuses to publish it
when it holds a private key (a PEM or OpenSSH private key block), a password hash in ``/etc/shadow`` or
``/etc/gshadow``, or a file where haoscar keeps its secrets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write

# Paths (rsync patterns anchored at the image's root) whose contents never leave a golden client.
SECRET_EXCLUDES: tuple[str, ...] = (
    "/etc/haoscar/*",  # ha.key, api.token, rsync password, cluster.yaml with fence credentials
    "/var/lib/haoscar/*",  # the cluster database, haoscar's ssh key, install tokens, replication state
    "/root/*",  # root's home: /root/.ssh (private keys, authorized_keys), history
    "/home/*",  # users' homes (the standby receives them by replication, nodes by NFS)
    "/etc/ssh/ssh_host_*",  # the head's host keys; each node makes its own
    "/etc/ssl/private/*",  # TLS private keys
    "/etc/krb5.keytab",
    "/etc/shadow-",  # the backups of shadow files hold the same hashes
    "/etc/gshadow-",
    "/var/backups/*",  # Debian keeps shadow.bak and gshadow.bak here
    "/var/mail/*",
    "/var/spool/mail/*",
)

# Files that must never be in an image, whatever made it (paths inside the image).
SECRET_FILES: tuple[str, ...] = ("etc/haoscar/ha.key", "etc/haoscar/api.token", "var/lib/haoscar/haoscar.db")
SECRET_DIRS: tuple[str, ...] = ("var/lib/haoscar/ssh", "root/.ssh")

_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----\r?\n(?:[A-Za-z0-9-]+: [^\n]*\n)*\r?\n?"
    rb"[A-Za-z0-9+/=\r\n]{32,}-----END \1PRIVATE KEY-----"
)
SCAN_MAX_BYTES = 1 << 20  # keys are small; big files are binaries, which hold the header only as a constant
SHADOW_FILES: tuple[str, ...] = ("etc/shadow", "etc/gshadow")


def _locked(field: str) -> bool:
    """A password field that holds no hash: empty, or only locking characters (``*``, ``!``, ``!!``, ``!*``)."""
    return set(field) <= {"*", "!"}


def shadow_hashes(text: str) -> list[str]:
    """The accounts of a shadow (or gshadow) file whose password field holds a hash."""
    found = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 2 and not _locked(fields[1]):
            found.append(fields[0])
    return found


def lock_shadow(root: Path) -> list[str]:
    """Replace every password hash in ``root``'s shadow files by ``!*``; the accounts changed.

    Written through a new file and a rename: the old file may be a hard link into an earlier version."""
    changed: list[str] = []
    for rel in SHADOW_FILES:
        path = root / rel
        if not path.is_file() or path.is_symlink():
            continue
        st = path.stat()
        lines = path.read_text().splitlines()
        out = []
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 2 and not _locked(fields[1]):
                changed.append(f"{rel}:{fields[0]}")
                fields[1] = "!*"
            out.append(":".join(fields))
        if changed:
            atomic_write(path, "\n".join(out) + "\n", mode=st.st_mode & 0o7777)
            os.chown(path, st.st_uid, st.st_gid)
    return changed


def _regular_files(root: Path) -> list[tuple[str, int]]:
    """(path relative to ``root``, size) of every regular file, never following a symlink."""
    found = []
    for current, dirs, files in os.walk(root):
        base = Path(current)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
        for name in files:
            path = base / name
            st = path.lstat()
            if path.is_file() and not path.is_symlink():
                found.append((str(path.relative_to(root)), st.st_size))
    return sorted(found)


def scan(root: Path) -> list[str]:
    """Why ``root`` must not be published: one line per offending file, empty when it is clean."""
    problems = []
    for rel, size in _regular_files(root):
        if rel in SECRET_FILES or any(rel.startswith(f"{d}/") for d in SECRET_DIRS):
            problems.append(f"/{rel}: a haoscar or root secret")
            continue
        if size > SCAN_MAX_BYTES:
            continue
        try:
            data = (root / rel).read_bytes()
        except OSError:
            continue
        if b"PRIVATE KEY-----" in data and _PRIVATE_KEY.search(data):
            problems.append(f"/{rel}: a private key")
        elif rel in SHADOW_FILES and (users := shadow_hashes(data.decode(errors="replace"))):
            problems.append(f"/{rel}: password hashes of {', '.join(users)}")
    return problems


def refuse_secrets(root: Path, name: str) -> None:
    """Raise a UserError naming the files when ``root`` holds secrets (nothing is stored then)."""
    problems = scan(root)
    if problems:
        raise UserError(
            f"image {name} holds secrets and was not stored; remove them from the source (or lock the password "
            "hashes with passwd -l) and try again",
            problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []),
        )
