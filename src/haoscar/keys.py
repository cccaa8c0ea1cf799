"""The shared HMAC key of the heads and the witness: generated 0600, refused when others could read it.

``write_secret`` is how haoscar writes a secret file (a key, a spec with fence passwords) where a local
unprivileged user might have prepared a trap (issue 10, finding 6: a symlink race in ``ha keygen --out``): the
directory is reached from ``/`` one component at a time without following a symbolic link that someone else owns,
every directory on the way must be root's (or ours) and not writable by others unless sticky, an existing file
at the path must be a plain file of ours with one link, and the data goes into a file created O_EXCL|O_NOFOLLOW
with mode 0600 under an unpredictable name, then linked or renamed into place relative to the checked directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from haoscar.errors import UserError

KEY_BYTES = 32
_MAX_LINKS = 40  # symbolic links followed on one path, as the kernel's limit


def generate_key(path: Path, force: bool = False) -> Path:
    """Write a new random key (hex) to ``path`` with mode 0600; an existing key is kept unless ``force``."""
    write_secret(path, secrets.token_hex(KEY_BYTES) + "\n", force=force, what="key")
    return path


def write_secret(path: Path, data: str | bytes, *, force: bool = True, mode: int = 0o600, what: str = "file") -> None:
    """Write ``data`` to ``path`` (mode ``mode``, root's or ours), safe against a local user's traps; an existing
    file is replaced only with ``force``. Raises ``UserError`` naming what is wrong, before anything is written."""
    raw = data.encode() if isinstance(data, str) else data
    path = Path(os.path.abspath(path))
    dfd = _open_dir(path.parent)
    try:
        _check_target(dfd, path, force, what)
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; nothing wider than ``mode`` ever existed
            os.write(fd, raw)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            if force:
                os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                try:  # link(2) never replaces: whatever appeared at the path since the check stays, and we stop
                    os.link(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileExistsError:
                    raise UserError(f"{path} appeared while the {what} was written; nothing was replaced") from None
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):  # renamed into place already
                os.unlink(tmp, dir_fd=dfd)
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _check_target(dfd: int, path: Path, force: bool, what: str) -> None:
    try:
        info = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UserError(
            f"{path} is a symbolic link; refusing to write a {what} through it (someone may have planted it): "
            "remove it or choose another path"
        )
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} exists and is not a regular file; choose another path")
    if info.st_uid not in (0, os.geteuid()):
        raise UserError(f"{path} exists and belongs to uid {info.st_uid}; refusing to replace it: remove it first")
    if info.st_nlink > 1:
        raise UserError(f"{path} has {info.st_nlink} hard links; refusing to write a {what} that others may see")
    if not force:
        raise UserError(f"{path} already exists; pass --force to replace it (then copy it to every head and witness)")


def _open_dir(directory: Path) -> int:
    """An fd of ``directory`` (created 0700 where missing), walked from ``/`` with every component checked."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = list(directory.parts[1:])
    where = Path("/")
    links = 0
    try:
        _check_dir(fd, where)
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if info.st_uid not in (0, os.geteuid()) or links > _MAX_LINKS:
                    raise UserError(
                        f"{where / part} is a symbolic link of uid {info.st_uid}; refusing to follow it to write a "
                        "secret (a local user could point it anywhere): use a path without it"
                    )
                target = os.readlink(part, dir_fd=fd)
                parts[:0] = [p for p in Path(target).parts if p != "/"]
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), Path("/")
                continue
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd, where = nfd, where / part
            _check_dir(fd, where)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_dir(fd: int, where: Path) -> None:
    """Root's (or ours), and writable by nobody else unless sticky (then nobody else can move our entries)."""
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()):
        raise UserError(
            f"{where} belongs to uid {info.st_uid}; a secret must not be written in a directory of another user"
        )
    others = stat.S_IWOTH | (stat.S_IWGRP if info.st_gid != 0 else 0)
    if info.st_mode & others and not info.st_mode & stat.S_ISVTX:
        raise UserError(
            f"{where} is writable by others and not sticky (mode {stat.S_IMODE(info.st_mode):04o}); a local user "
            "could swap the secret: use a directory only root can write, e.g. /etc/haoscar"
        )


def load_key(path: Path) -> bytes:
    """The key bytes. Raises ``UserError`` when the file is missing, readable by group/other, or too short."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"HA key file {path} does not exist; create it with `haoscar ha keygen --out {path}`") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"HA key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; group and other must not read it: "
            f"run `chmod 600 {path}`"
        )
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < 16:
        raise UserError(f"HA key file {path} holds {len(key)} bytes; use at least 16 (`haoscar ha keygen`)")
    return key
