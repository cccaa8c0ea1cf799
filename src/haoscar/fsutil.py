"""Small file-system helpers shared by every layer."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def atomic_write(
    path: Path, data: str | bytes, *, mode: int = 0o644, durable: bool = True, compare: bool = True
) -> bool:
    """Replace ``path`` by ``data`` through a temporary file in the same directory and a rename, so that neither a
    reader nor a crash ever sees a half-written file. The one writer of whole files in haoscar.

    ``mode``: the file's permission bits, set on the temporary file before any data is in it, so a secret (a key,
    an rsync password) is never readable by others, whatever the umask.
    ``durable``: fsync the data before the rename, so the new content survives a crash once this returns; False
    for files rebuilt from the database anyway, where thousands of fsyncs would only cost time.
    ``compare``: when the file already holds exactly ``data``, write nothing (only its mode is corrected) and
    return False; pass False when the caller already knows the content differs (reading it back would cost).
    Returns True when the file was written."""
    raw = data.encode() if isinstance(data, str) else data
    if compare and _holds(path, raw, mode):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _holds(path: Path, raw: bytes, mode: int) -> bool:
    """Whether ``path`` already holds ``raw``; its mode is set to ``mode`` if that was all that differed."""
    try:
        # Never through a symbolic link (a local user's trap would get root's chmod); such a path is replaced.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        try:
            if handle.read() != raw:
                return False
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
        except OSError:
            return False
    return True
