"""UNIX socket paths of any length.

``sun_path`` holds at most 108 bytes, so a socket under a long state directory (a test's tmp_path, a lab host's
directory under a long ``--state-dir``) can be neither bound nor connected by its path. The kernel resolves the
name like any other path, though: through ``/proc/self/fd/N/NAME``, where N is an ``O_PATH`` descriptor of the
socket's directory, it is always short. Both the daemon (bind) and every client (connect) go through
``socket_name``, so the state directory's length never matters.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# sun_path is 108 bytes including the terminating NUL
SUN_PATH_MAX = 107


@contextlib.contextmanager
def socket_name(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in ``sun_path``, valid inside the ``with`` block (bind or connect there)."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    try:
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
