"""inotify (through the watchdog library) feeding the change sets of the replicated trees."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from haoscar.replication.changes import ChangeSet, Kind


def _path(raw: str | bytes) -> str:
    return os.fsdecode(raw)


def classify(event: FileSystemEvent, lstat: Callable[[str], os.stat_result] = os.lstat) -> list[tuple[Kind, str]]:
    """What a watchdog event means for replication, as (kind, path) notes."""
    src = _path(event.src_path)
    if isinstance(event, FileClosedEvent):
        return [("file", src)]
    if isinstance(event, FileModifiedEvent):
        return [("write", src)]
    if isinstance(event, FileAttribEvent | DirAttribEvent):
        # chmod, chown, xattrs, ACLs and the link count of a new hard link: nothing is half-written here.
        return [("file", src)]
    if isinstance(event, FileCreatedEvent):
        try:
            st = lstat(src)
        except OSError:
            return [("delete", src)]
        # A regular file with one name is being written: its close ships it. Links, symlinks, fifos are complete.
        complete = not stat.S_ISREG(st.st_mode) or st.st_nlink > 1
        return [("file" if complete else "write", src)]
    if isinstance(event, DirCreatedEvent):
        return [("dir", src)]
    if isinstance(event, FileDeletedEvent | DirDeletedEvent):
        return [("delete", src)]
    if isinstance(event, FileMovedEvent | DirMovedEvent):
        notes: list[tuple[Kind, str]] = []
        if event.src_path:
            notes.append(("delete", src))
        if event.dest_path:
            notes.append(("dir" if isinstance(event, DirMovedEvent) else "file", _path(event.dest_path)))
        return notes
    return []  # DirModified (a child changed), opens and reads: nothing to ship


class _Handler(FileSystemEventHandler):
    def __init__(self, changes: ChangeSet) -> None:
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        for kind, path in classify(event):
            self.changes.note(kind, path)


def start_observer(changes: Sequence[ChangeSet]) -> BaseObserver:
    """One inotify observer with a recursive watch per tree; stop it with ``stop()`` + ``join()``."""
    observer = Observer()
    for change_set in changes:
        observer.schedule(_Handler(change_set), str(change_set.root), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
