"""Pending file changes of one tree, batched for rsync: which paths are ready to ship and which are still being
written.

A regular file is shipped when its writer closed it (IN_CLOSE_WRITE) and its size and mtime did not change since
then; a write without a close (mmap, a log held open) only once it has been still for ``quiet_s``. A new name
that saw no write (made by ``link()`` of a file written and closed under another name) is complete, and ready at
once, unless a process holds its inode open for writing (``writers.still_written``). Attribute changes, links,
symlinks and deletions are ready at once. Renames arrive as a deletion plus a creation. Hard links
are only kept by ``rsync -H`` among names of one transfer, so every known name of a multiply linked inode joins
the batch. Everything here is thread-safe: the watcher thread notes, the replication task takes batches.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from haoscar.replication.writers import Inode, still_written

Kind = Literal["file", "write", "delete", "dir"]
StatSig = tuple[int, int, int]  # size, mtime_ns, mode


def signature(st: os.stat_result) -> StatSig:
    return (st.st_size, st.st_mtime_ns, st.st_mode)


class Excludes:
    """rsync-style exclude patterns: ``/x`` is anchored at the tree's root, ``x/`` matches a directory and all
    below it, a pattern with no slash matches any path component."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        for pattern in self.patterns:
            dir_only = pattern.endswith("/")
            pat = pattern.rstrip("/")
            if pat.startswith("/"):
                pat = pat[1:]
                depth = pat.count("/") + 1
                prefixes = ["/".join(parts[:depth])] if len(parts) >= depth else []
                # A directory pattern excludes what lies below; a plain one only the path itself.
                if dir_only and len(parts) > depth and any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
                    return True
                if not dir_only and len(parts) == depth and fnmatch.fnmatchcase(rel, pat):
                    return True
            elif "/" in pat:
                if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(rel, f"*/{pat}"):
                    return True
            else:
                components = parts[:-1] if dir_only else parts
                if any(fnmatch.fnmatchcase(c, pat) for c in components):
                    return True
        return False


@dataclass
class Pending:
    kind: Kind
    since: float  # monotonic time of the first unshipped change: the lag clock starts here
    updated: float  # monotonic time of the last change or stat check
    sig: StatSig | None = None
    # Created (IN_CREATE) and not written since: complete unless a process holds it open for writing.
    fresh: bool = False


@dataclass
class Batch:
    paths: list[str] = field(default_factory=list)  # to copy (files, links, new directories: recursively)
    deletes: list[str] = field(default_factory=list)  # to delete on the peer (--delete-missing-args)
    size: int = 0
    taken: dict[str, Pending] = field(default_factory=dict)
    sigs: dict[str, StatSig] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.paths or self.deletes)

    @property
    def oldest(self) -> float | None:
        return min((p.since for p in self.taken.values()), default=None)

    def files_from(self) -> bytes:
        """The --files-from list, NUL separated (--from0): names may hold newlines."""
        return b"".join(os.fsencode(p) + b"\0" for p in [*self.deletes, *self.paths])


class ChangeSet:
    def __init__(
        self,
        root: Path,
        excludes: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        lstat: Callable[[str], os.stat_result] = os.lstat,
        writers: Callable[[Mapping[Inode, str]], set[Inode]] = still_written,
    ) -> None:
        self.root = Path(root)
        self.excludes = Excludes(excludes)
        self._clock = clock
        self._lstat = lstat
        self._writers = writers
        self._pending: dict[str, Pending] = {}
        self._links: dict[tuple[int, int], set[str]] = {}
        self._lock = threading.Lock()
        self.wakeup: Callable[[], None] = lambda: None

    # -- the watcher side -------------------------------------------------------------------------------------
    def relative(self, path: str | os.PathLike[str]) -> str | None:
        """``path`` relative to the tree, or None when it is outside it, the root itself, or excluded."""
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return None
        if rel in ("", ".") or self.excludes.excluded(rel):
            return None
        return rel

    def note(self, kind: Kind, path: str | os.PathLike[str], fresh: bool = False) -> None:
        """``fresh``: a ``write`` note for a newly created name (no write seen on it yet)."""
        rel = self.relative(path)
        if rel is None:
            return
        now = self._clock()
        sig = None
        if kind in ("file", "write"):
            try:
                sig = signature(self._lstat(str(self.root / rel)))
            except OSError:
                kind = "delete"
        with self._lock:
            old = self._pending.get(rel)
            # A deletion or re-creation replaces what was pending; the lag clock keeps its first start.
            if old is not None and kind == "write" and old.kind == "dir":
                kind = "dir"
            self._pending[rel] = Pending(kind, old.since if old else now, now, sig, fresh and kind == "write")
        self.wakeup()

    def note_link_names(self, names: dict[tuple[int, int], set[str]]) -> None:
        """Hard-link groups found by a full walk (names relative to the tree)."""
        with self._lock:
            for inode, group in names.items():
                self._links.setdefault(inode, set()).update(group)

    # -- the replication side ---------------------------------------------------------------------------------
    def take(self, quiet_s: float) -> Batch:
        """Remove and return what is ready to ship now; files still being written stay pending."""
        now = self._clock()
        batch = Batch()
        with self._lock:
            fresh: list[tuple[str, Pending, os.stat_result]] = []
            for rel, entry in list(self._pending.items()):
                if entry.kind in ("delete", "dir"):
                    self._ship(batch, rel, entry, None)
                    continue
                try:
                    st = self._lstat(str(self.root / rel))
                except OSError:
                    entry.kind = "delete"
                    self._ship(batch, rel, entry, None)
                    continue
                sig = signature(st)
                if sig != entry.sig:
                    # Changed since its close (or since the last look): someone is writing it again.
                    entry.kind, entry.sig, entry.updated, entry.fresh = "write", sig, now, False
                    continue
                if entry.kind == "write" and now - entry.updated < quiet_s:
                    if entry.fresh:
                        fresh.append((rel, entry, st))
                    continue
                self._ship(batch, rel, entry, st)
            self._ship_fresh(batch, fresh)
            self._add_link_names(batch)
        return batch

    def _ship_fresh(self, batch: Batch, fresh: list[tuple[str, Pending, os.stat_result]]) -> None:
        """New names nobody writes: complete (one check for all). Those with a writer wait for its close
        or for quiet, as any write does, and are not scanned again."""
        if not fresh:
            return
        held = self._writers({(st.st_dev, st.st_ino): str(self.root / rel) for rel, _entry, st in fresh})
        for rel, entry, st in fresh:
            entry.fresh = False
            if (st.st_dev, st.st_ino) not in held:
                entry.kind = "file"
                self._ship(batch, rel, entry, st)

    def _ship(self, batch: Batch, rel: str, entry: Pending, st: os.stat_result | None) -> None:
        del self._pending[rel]
        batch.taken[rel] = entry
        if entry.kind == "delete":
            batch.deletes.append(rel)
            return
        batch.paths.append(rel)
        if st is not None:
            batch.sigs[rel] = signature(st)
            if stat.S_ISREG(st.st_mode):
                batch.size += st.st_size
                if st.st_nlink > 1:
                    self._links.setdefault((st.st_dev, st.st_ino), set()).add(rel)

    def _add_link_names(self, batch: Batch) -> None:
        shipping = set(batch.paths)
        linked: list[tuple[str, os.stat_result]] = []
        for rel in batch.paths:
            if rel not in batch.sigs:
                continue
            try:
                st = self._lstat(str(self.root / rel))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                linked.append((rel, st))
        # A new link to a file shipped long ago: its other names are unknown, so look for them (links are rare).
        unknown = {(st.st_dev, st.st_ino) for _rel, st in linked
                   if len(self._links.get((st.st_dev, st.st_ino), ())) < st.st_nlink}  # fmt: skip
        if unknown:
            for inode, names in walk_link_groups(self.root, self.excludes, only=unknown).items():
                self._links.setdefault(inode, set()).update(names)
        for _rel, st in linked:
            group = self._links.get((st.st_dev, st.st_ino))
            if not group:
                continue
            for other in sorted(group - shipping):
                try:
                    ost = self._lstat(str(self.root / other))
                except OSError:
                    group.discard(other)
                    continue
                if (ost.st_dev, ost.st_ino) != (st.st_dev, st.st_ino):
                    group.discard(other)
                    continue
                batch.paths.append(other)
                shipping.add(other)

    def requeue(self, batch: Batch) -> None:
        """Put a batch that failed to ship back, keeping the lag clock of each path (newer changes win)."""
        with self._lock:
            for rel, entry in batch.taken.items():
                if rel not in self._pending:
                    self._pending[rel] = entry
                else:
                    self._pending[rel].since = min(self._pending[rel].since, entry.since)

    def changed_since_ship(self, batch: Batch) -> None:
        """After rsync: a file whose size or mtime moved while it was copied goes again (the copy may be torn)."""
        for rel, sig in batch.sigs.items():
            try:
                now = signature(self._lstat(str(self.root / rel)))
            except OSError:
                now = None
            if now != sig:
                self.note("file" if now is not None else "delete", self.root / rel)

    def writing(self, limit: int = 500) -> list[str]:
        """Paths still being written: a recursive copy of their directory (a new or renamed one, a full pass)
        must skip them, or a half-written file would land on the peer."""
        with self._lock:
            return [rel for rel, entry in self._pending.items() if entry.kind == "write"][:limit]

    # -- status -----------------------------------------------------------------------------------------------
    def stats(self) -> tuple[int, int, float | None]:
        """(paths pending, bytes pending, monotonic time of the oldest pending change)."""
        with self._lock:
            entries = list(self._pending.items())
        size = 0
        for _rel, entry in entries:
            if entry.sig is not None:
                size += entry.sig[0]
        return len(entries), size, min((e.since for _r, e in entries), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


def walk_link_groups(
    root: Path, excludes: Excludes, only: set[tuple[int, int]] | None = None
) -> dict[tuple[int, int], set[str]]:
    """Every multiply linked regular file under ``root`` (of the ``only`` inodes), grouped by inode (for rsync -H
    in incremental batches)."""
    groups: dict[tuple[int, int], set[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                if only is not None and (st.st_dev, st.st_ino) not in only:
                    continue
                rel = os.path.relpath(full, root)
                if not excludes.excluded(rel):
                    groups.setdefault((st.st_dev, st.st_ino), set()).add(rel)
    return groups
