"""The image as the installer receives it, a tar stream, and that stream's SHA-256.

The boot server streams ``tar_argv(root)``; the plan carries the SHA-256 of that same stream, computed once per
image version and cached next to the version (``versions/N/tar.sha256``). ``--sort=name`` and numeric owners make
the stream a function of the tree alone, so the installer can check what it unpacked against the plan: a stream
cut short, or changed on the way, fails the install instead of leaving a half system marked installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write

CACHE_NAME = "tar.sha256"
CHUNK = 1 << 20


def tar_argv(root: Path) -> list[str]:
    return ["tar", "-C", str(root), "--numeric-owner", "--sort=name", "-cf", "-", "."]


def _compute(root: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with subprocess.Popen(tar_argv(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        errors = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    if code != 0:
        raise UserError(f"cannot read the image tree {root} (tar exit {code})", errors.strip().splitlines()[-3:])
    return digest.hexdigest(), size


def stream_sha256(root: Path) -> str:
    """The SHA-256 of ``root``'s tar stream; cached beside the version directory (``root``'s parent)."""
    cache = root.parent / CACHE_NAME
    try:
        return cache.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        pass
    # One computation per version at a time: a rack of nodes asking for their plans at once waits for it.
    lock = os.open(root.parent / f".{CACHE_NAME}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return cache.read_text().split()[0]
        except (FileNotFoundError, IndexError):
            pass
        sha, size = _compute(root)
        atomic_write(cache, f"{sha} {size}\n")
        return sha
    finally:
        os.close(lock)
