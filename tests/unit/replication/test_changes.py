"""Batching of file changes: what is ready to ship, what waits for its writer, hard-link groups, excludes."""

from __future__ import annotations

import os
from pathlib import Path

from haoscar.replication.changes import ChangeSet, Excludes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, excludes: tuple[str, ...] = ()) -> tuple[ChangeSet, Clock]:
    clock = Clock()
    return ChangeSet(tmp_path, excludes, clock=clock), clock


def test_a_closed_file_ships_in_the_next_batch(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    (tmp_path / "a").write_text("done")
    changes.note("file", tmp_path / "a")
    batch = changes.take(quiet_s=2.0)
    assert batch.paths == ["a"] and batch.deletes == [] and batch.size == 4
    assert not changes.take(quiet_s=2.0)


def test_a_file_being_written_waits_for_its_close_or_a_quiet_period(tmp_path: Path) -> None:
    changes, clock = make(tmp_path)
    (tmp_path / "big").write_text("half")
    changes.note("write", tmp_path / "big")
    assert not changes.take(quiet_s=2.0)
    clock.now += 1.0
    assert not changes.take(quiet_s=2.0)
    clock.now += 1.5  # still for 2.5 s: a writer that never closes (mmap, a log) is shipped anyway
    assert changes.take(quiet_s=2.0).paths == ["big"]


def test_a_file_changed_after_its_close_is_held_back(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    path = tmp_path / "f"
    path.write_text("v1")
    changes.note("file", path)
    with path.open("a") as handle:  # the writer reopened it: the closed version is not the final one
        handle.write("more")
    os.utime(path, ns=(1, 1))
    assert not changes.take(quiet_s=2.0)
    assert len(changes) == 1
    changes.note("file", path)  # its second close
    assert changes.take(quiet_s=2.0).paths == ["f"]


def test_deletion_and_rename(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    (tmp_path / "new").write_text("x")
    changes.note("delete", tmp_path / "old")
    changes.note("file", tmp_path / "new")
    batch = changes.take(quiet_s=2.0)
    assert batch.deletes == ["old"] and batch.paths == ["new"]
    assert batch.files_from() == b"old\0new\0"


def test_a_file_gone_before_shipping_becomes_a_deletion(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    (tmp_path / "tmp").write_text("x")
    changes.note("file", tmp_path / "tmp")
    (tmp_path / "tmp").unlink()
    batch = changes.take(quiet_s=2.0)
    assert batch.deletes == ["tmp"] and batch.paths == []


def test_every_name_of_a_hard_link_group_ships_together(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    (tmp_path / "a").write_text("shared")
    changes.note("file", tmp_path / "a")
    changes.take(quiet_s=2.0)
    os.link(tmp_path / "a", tmp_path / "b")
    changes.note("file", tmp_path / "b")  # only the new name changed, yet rsync -H needs both
    assert sorted(changes.take(quiet_s=2.0).paths) == ["a", "b"]


def test_a_failed_batch_is_requeued_with_its_lag_clock(tmp_path: Path) -> None:
    changes, clock = make(tmp_path)
    (tmp_path / "a").write_text("x")
    changes.note("file", tmp_path / "a")
    batch = changes.take(quiet_s=2.0)
    clock.now += 5
    changes.requeue(batch)
    count, size, oldest = changes.stats()
    assert (count, size, oldest) == (1, 1, 100.0)


def test_paths_outside_the_tree_or_excluded_are_ignored(tmp_path: Path) -> None:
    changes, _ = make(tmp_path, ("*.tmp", "/cache/", "/top.log"))
    for rel in ("x.tmp", "cache/a", "top.log", "sub/top.log", "keep"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
        changes.note("file", tmp_path / rel)
    changes.note("file", "/etc/passwd")
    changes.note("file", tmp_path)
    assert sorted(changes.take(quiet_s=2.0).paths) == ["keep", "sub/top.log"]


def test_exclude_patterns_follow_rsync() -> None:
    rules = Excludes(["/haoscar.db-*", "/replication/", "*.swp", "cache/", "a/b"])
    assert rules.excluded("haoscar.db-wal")
    assert not rules.excluded("x/haoscar.db-wal")
    assert rules.excluded("replication/state.json")
    assert not rules.excluded("replication")  # the directory itself stays, as with rsync's "dir/" pattern
    assert rules.excluded("home/.x.swp")
    assert rules.excluded("u/cache/f")
    assert rules.excluded("z/a/b")
    assert not rules.excluded("images/img.tar")


def test_files_being_written_are_listed_for_exclusion_from_recursive_copies(tmp_path: Path) -> None:
    changes, _ = make(tmp_path)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "half").write_text("x")
    (tmp_path / "new" / "done").write_text("y")
    changes.note("dir", tmp_path / "new")
    changes.note("write", tmp_path / "new" / "half")
    changes.note("file", tmp_path / "new" / "done")
    batch = changes.take(quiet_s=2.0)
    assert sorted(batch.paths) == ["new", "new/done"]
    assert changes.writing() == ["new/half"]
