"""inotify (through the watchdog library) feeding the change sets of the replicated trees.

Events can be lost: the kernel's inotify queue overflows under a burst, or the watch limit
(``fs.inotify.max_user_watches``) leaves new directories unwatched. watchdog only logs the first and silently skips
the second, so both are caught here and reported to ``on_lost``: the replicator then marks the standby not in sync
and runs a full pass (see ``files.FileReplicator.events_lost``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable, Sequence
from typing import Any

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

try:
    from watchdog.observers.inotify_c import InotifyFD
except ImportError:  # not Linux: no inotify, no watch limit
    InotifyFD = None  # type: ignore[assignment,misc]

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
    if isinstance(event, DirAttribEvent):
        return [("file", src)]
    if isinstance(event, FileAttribEvent | FileCreatedEvent):
        try:
            st = lstat(src)
        except OSError:
            return [("delete", src)]
        # A regular file may still be written, whatever made the event: a new name (also one made by link(), whose
        # other name a writer may still hold open), a chmod, or the link count of a new hard link. Its close ships
        # it, or the writer check when the batch is taken (the handler marks it fresh). Symlinks, fifos: complete.
        return [("write" if stat.S_ISREG(st.st_mode) else "file", src)]
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
        # A created name gets no close event when it was made by link() of a file closed under another name
        # (slurmctld's job_state): marked fresh, it ships with the next batch unless a process holds it open for
        # writing (changes.ChangeSet.take); a write or close event on it replaces the mark.
        created = isinstance(event, FileCreatedEvent | FileAttribEvent)
        for kind, path in classify(event):
            self.changes.note(kind, path, fresh=created)


OnLost = Callable[[str], None]
_listeners: set[OnLost] = set()
_listeners_lock = threading.Lock()


def _tell(why: str) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(why)


class _LostEvents(logging.Handler):
    """watchdog reports a queue overflow only in its log: turn that record into a report."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower() or "unable to rebuild" in message.lower():
            _tell(f"inotify: {message}")


def _watch_limit_seen(original: Callable[..., Any]) -> Callable[..., Any]:
    def add_callback(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                _tell(f"inotify watch limit reached ({exc.strerror}); raise fs.inotify.max_user_watches")
            raise

    return add_callback


def _install() -> None:
    """Once per process: the log handler, and a wrapper that sees the watch limit watchdog would swallow."""
    logger = logging.getLogger("watchdog.observers")
    logger.setLevel(logging.WARNING)  # created whatever the root logger's level: the record is the report
    logger.addHandler(_LostEvents(logging.WARNING))
    if InotifyFD is not None and hasattr(InotifyFD, "add_callback"):
        InotifyFD.add_callback = _watch_limit_seen(InotifyFD.add_callback)  # type: ignore[method-assign]


_install()


def listen_for_lost_events(on_lost: OnLost) -> Callable[[], None]:
    """Call ``on_lost(why)`` (from watchdog's thread) whenever events may have been lost; returns the remover."""
    with _listeners_lock:
        _listeners.add(on_lost)

    def forget() -> None:
        with _listeners_lock:
            _listeners.discard(on_lost)

    return forget


def start_observer(changes: Sequence[ChangeSet]) -> BaseObserver:
    """One inotify observer with a recursive watch per tree; stop it with ``stop()`` + ``join()``."""
    observer = Observer()
    for change_set in changes:
        observer.schedule(_Handler(change_set), str(change_set.root), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
