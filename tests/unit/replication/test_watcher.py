"""What each inotify event (through watchdog) means for replication."""

from __future__ import annotations

import os
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from haoscar.replication.watcher import classify


def test_writes_wait_for_the_close(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    assert classify(FileCreatedEvent(str(path))) == [("write", str(path))]
    assert classify(FileModifiedEvent(str(path))) == [("write", str(path))]
    assert classify(FileClosedEvent(str(path))) == [("file", str(path))]


def test_symlinks_and_directories_are_ready_at_once(tmp_path: Path) -> None:
    os.symlink("f", tmp_path / "s")
    assert classify(FileCreatedEvent(str(tmp_path / "s"))) == [("file", str(tmp_path / "s"))]
    assert classify(DirCreatedEvent(str(tmp_path))) == [("dir", str(tmp_path))]


def test_a_hard_link_or_an_attribute_change_of_a_regular_file_is_left_to_the_writer_check(tmp_path: Path) -> None:
    # link() of a file another name of which a writer still holds open, or its chmod, must not ship it half-written:
    # both are writes the handler marks fresh, shipped at the next batch unless a process holds the file for writing.
    path = tmp_path / "f"
    path.write_text("x")
    os.link(path, tmp_path / "g")
    assert classify(FileCreatedEvent(str(tmp_path / "g"))) == [("write", str(tmp_path / "g"))]
    assert classify(FileAttribEvent(str(path))) == [("write", str(path))]
    assert classify(FileAttribEvent(str(tmp_path / "gone"))) == [("delete", str(tmp_path / "gone"))]


def test_renames_are_a_deletion_and_a_creation() -> None:
    assert classify(FileMovedEvent("/t/a", "/t/b")) == [("delete", "/t/a"), ("file", "/t/b")]
    assert classify(DirMovedEvent("/t/d", "/t/e")) == [("delete", "/t/d"), ("dir", "/t/e")]
    assert classify(FileMovedEvent("", "/t/in")) == [("file", "/t/in")]  # moved in from an unwatched place
    assert classify(FileDeletedEvent("/t/x")) == [("delete", "/t/x")]


def test_noise_is_ignored() -> None:
    assert classify(DirModifiedEvent("/t")) == []
    assert classify(FileOpenedEvent("/t/a")) == []
