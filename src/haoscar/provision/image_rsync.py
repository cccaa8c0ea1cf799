"""rsync as the image store's copy engine: what to exclude from a golden client, how to run rsync with progress,
and how big a stored tree is.

Every version is made with ``rsync -aHAX --numeric-ids --delete --link-dest=PREVIOUS`` so that files unchanged since
the previous version are hard links into it and cost no space (SystemImager's si_getimage does the same pull).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from haoscar.errors import UserError
from haoscar.provision.image_secrets import SECRET_EXCLUDES

# Pseudo and volatile file systems: the directories stay (they are mount points on the installed node),
# their contents never enter an image.
STANDARD_EXCLUDES: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run", "/tmp")

# Where an image store usually lives on a machine that runs haoscar: a golden client that is itself a head node
# must not send its own images (the fetching side's store path is added too).
DEFAULT_STORE_PATHS: tuple[str, ...] = ("/var/lib/haoscar/images",)

# File systems that live on another machine: copying them would pull a file server into every node image.
NETWORK_FS_TYPES: frozenset[str] = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "coda",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "orangefs",
        "pvfs2",
        "davfs",
        "sshfs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.davfs2",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.ceph",
        "fuse.cephfs",
        "fuse.beegfs",
    }
)

RSYNC_COPY_FLAGS: tuple[str, ...] = ("-aHAX", "--numeric-ids", "--delete")

Progress = Callable[[float, str], None]
"""A progress callback: percent done (0-100) and a short description of the current step."""


@dataclass(frozen=True)
class Mount:
    device: str
    mount_point: str
    fs_type: str


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash in paths as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return mounts


def network_mounts(mounts: Iterable[Mount]) -> list[str]:
    return sorted({m.mount_point for m in mounts if m.fs_type in NETWORK_FS_TYPES})


def _relative_to_root(path: str, source_root: str) -> str | None:
    """``path`` as an rsync pattern anchored at the transfer root, or None when it is outside the source root."""
    p = PurePosixPath(os.path.normpath(path))
    root = PurePosixPath(os.path.normpath(source_root))
    if p == root:
        return None
    try:
        rel = p.relative_to(root)
    except ValueError:
        return None
    return "/" + rel.as_posix()


def exclude_rules(source_root: str, network_mount_points: Iterable[str], store_paths: Iterable[str]) -> list[str]:
    """rsync exclude patterns for a fetch of ``source_root``.

    Standard pseudo file systems are anchored at the transfer root (the source root is a root file system, or a
    tree laid out like one); network mounts and image stores are absolute paths on the golden client and are
    translated to the source root, or dropped when they are outside it. ``DIR/*`` keeps the directory itself, so
    the image still has the mount point.
    """
    rules = [f"{path}/*" for path in STANDARD_EXCLUDES]
    for path in sorted({*network_mount_points, *store_paths}):
        rel = _relative_to_root(path, source_root)
        if rel is not None:
            rules.append(f"{rel}/*")
    return rules


def fetch_rules(source_root: str, network_mount_points: Iterable[str], store_paths: Iterable[str]) -> list[str]:
    """Everything a fetch excludes: ``exclude_rules`` and ``SECRET_EXCLUDES`` (haoscar's secrets, homes, host keys;
    anchored at the transfer root like the pseudo file systems). The one list the fetch and its tests use."""
    return [*exclude_rules(source_root, network_mount_points, store_paths), *SECRET_EXCLUDES]


# "     32,768  45%   31.25MB/s    0:00:01 (xfr#1, to-chk=10/30)": one progress2 update.
_PROGRESS_LINE = re.compile(rb"^\s*[\d,.]+[KMGT]?\s+(\d{1,3})%\s")


def run_rsync(argv: Sequence[str], progress: Progress | None, label: str) -> subprocess.CompletedProcess[str]:
    """Run rsync with ``--info=progress2``, reporting its overall percentage; returns stdout (minus progress
    lines) and stderr."""
    # stderr goes to a file: a pipe read only after stdout could fill up and stall rsync on a noisy copy.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [argv[0], "--info=progress2", "--no-inc-recursive", *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        try:
            kept = _follow(proc, progress, label)
            code = proc.wait()
        except BaseException:
            # Interrupted (Ctrl-C): the caller throws the half copy away, so rsync must not keep writing it.
            proc.kill()
            proc.wait()
            raise
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    return subprocess.CompletedProcess(list(argv), code, "\n".join(kept), stderr)


def _follow(proc: subprocess.Popen[bytes], progress: Progress | None, label: str) -> list[str]:
    """Read rsync's stdout to its end: progress2 rewrites one line with carriage returns, so split on both."""
    assert proc.stdout is not None
    if progress is not None:
        progress(0, f"{label}: listing files")
    kept: list[str] = []
    buffer = b""
    with proc.stdout:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            buffer += chunk
            *parts, buffer = re.split(rb"[\r\n]", buffer)
            for part in parts:
                match = _PROGRESS_LINE.match(part)
                if match:
                    if progress is not None:
                        progress(float(match.group(1)), label)
                elif part.strip():
                    kept.append(part.decode(errors="replace"))
    if buffer.strip():
        kept.append(buffer.decode(errors="replace"))
    return kept


@dataclass(frozen=True)
class TreeStats:
    files: int
    bytes: int
    new_bytes: int


def tree_stats(root: Path) -> TreeStats:
    """Entries, bytes of regular files (each inode once), and bytes held only by this tree.

    A regular file whose link count is higher than the number of its names inside this tree is shared with
    another version of the image (a ``--link-dest`` hard link), so it costs this version nothing.
    """
    entries = 0
    sizes: dict[tuple[int, int], tuple[int, int]] = {}
    seen: dict[tuple[int, int], int] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as it:
            for entry in it:
                entries += 1
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    key = (st.st_dev, st.st_ino)
                    sizes[key] = (st.st_size, st.st_nlink)
                    seen[key] = seen.get(key, 0) + 1
    total = sum(size for size, _ in sizes.values())
    new = sum(size for key, (size, nlink) in sizes.items() if nlink <= seen[key])
    return TreeStats(entries, total, new)


def rsync_failure(what: str, result: subprocess.CompletedProcess[str]) -> UserError:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    tail = lines[-3:] if lines else [f"rsync exited with status {result.returncode}"]
    return UserError(f"{what} failed (rsync exit {result.returncode}); nothing was stored", tail)
