"""A name made by link() of a file already written and closed (slurmctld's job_state.new -> job_state) ships in
the next batch; a file still open for writing is held back. Real files, real inotify, the real /proc check."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from haoscar.replication.changes import ChangeSet
from haoscar.replication.rsync import FIDELITY
from haoscar.replication.watcher import start_observer
from haoscar.replication.writers import Inode, held_for_writing

NEVER_QUIET = 1e9  # the quiet period never elapses here: whatever ships, ships for another reason


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[ChangeSet]:
    changes = ChangeSet(tmp_path)
    observer = start_observer([changes])
    try:
        yield changes
    finally:
        observer.stop()
        observer.join(5)


def shipped_within(changes: ChangeSet, seconds: float) -> set[str]:
    """Everything batches took during ``seconds`` (taken as the batch loop does, every 0.1 s)."""
    out: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.update(changes.take(NEVER_QUIET).paths)
        time.sleep(0.1)
    return out


def ships(changes: ChangeSet, name: str, timeout: float = 30.0) -> bool:
    """True at the first batch (taken as the batch loop does, every 0.1 s) that holds ``name``; False when none
    did within ``timeout``. The inotify observer is a thread: on a busy machine it may deliver late, so a
    positive check waits for the batch instead of giving it a fixed window (with the quiet period never elapsing,
    a name that is not shipped for its own reason never shows up, however long the wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in changes.take(NEVER_QUIET).paths:
            return True
        time.sleep(0.1)
    return False


def save_like_slurmctld(root: Path, data: bytes) -> None:
    new = root / "job_state.new"
    new.write_bytes(data)  # written and closed under the temporary name
    os.link(new, root / "job_state")
    os.unlink(new)


def test_a_name_linked_to_a_closed_file_ships_without_waiting_for_quiet(watched: ChangeSet, tmp_path: Path) -> None:
    save_like_slurmctld(tmp_path, b"queue v1")
    assert ships(watched, "job_state")
    # The next save replaces the name with a new inode: it ships again, again without a quiet period.
    os.unlink(tmp_path / "job_state")
    save_like_slurmctld(tmp_path, b"queue v2")
    assert ships(watched, "job_state")


def test_a_file_still_open_for_writing_is_held_back(watched: ChangeSet, tmp_path: Path) -> None:
    with open(tmp_path / "log", "wb") as writer:
        writer.write(b"first half")
        writer.flush()
        assert "log" not in shipped_within(watched, 1.0)
        writer.write(b", second half")
    assert ships(watched, "log")  # its close ships it


def test_a_linked_name_of_a_file_held_open_for_writing_waits(watched: ChangeSet, tmp_path: Path) -> None:
    with open(tmp_path / "data.new", "wb") as writer:
        writer.write(b"partial")
        writer.flush()
        os.link(tmp_path / "data.new", tmp_path / "data")
        os.unlink(tmp_path / "data.new")
        # Linked while its writer holds it: not complete, though the name itself saw no write.
        assert "data" not in shipped_within(watched, 1.0)


def test_the_proc_check_sees_a_writer_and_only_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = path.stat()
    inode = (st.st_dev, st.st_ino)
    with open(path, "rb"):
        assert held_for_writing({inode}) == set()  # a reader is no writer
    with open(path, "ab"):
        assert held_for_writing({inode}) == {inode}
    with open(path, "r+b"):
        assert held_for_writing({inode}) == {inode}
    assert held_for_writing({inode}) == set()


def test_one_proc_scan_answers_for_every_new_name_of_a_batch(tmp_path: Path) -> None:
    scans: list[set[Inode]] = []

    def writers(inodes: Iterable[Inode]) -> set[Inode]:
        scans.append(set(inodes))
        return set()

    changes = ChangeSet(tmp_path, writers=writers)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
        changes.note("write", tmp_path / name, fresh=True)
    (tmp_path / "d").write_text("d")
    changes.note("write", tmp_path / "d")  # a write seen on the name: waits for its close or quiet, no scan
    assert sorted(changes.take(quiet_s=2.0).paths) == ["a", "b", "c"]
    assert len(scans) == 1 and len(scans[0]) == 3


def test_real_rsync_of_the_batches_brings_the_linked_name_without_a_quiet_period(
    watched: ChangeSet, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The batches as the replicator takes them, shipped with rsync --files-from: the standby's copy of the
    linked name gets the saved bytes although the quiet period never elapses."""
    dest = tmp_path_factory.mktemp("standby")
    save_like_slurmctld(tmp_path, b"queue after the last sbatch")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (dest / "job_state").exists():
        batch = watched.take(NEVER_QUIET)
        if batch:
            argv = ["rsync", "-aH", "--relative", "--from0", "--files-from=-", "--delete-missing-args"]
            subprocess.run([*argv, f"{tmp_path}/./", f"{dest}/"], input=batch.files_from(), check=True)
        time.sleep(0.1)
    assert (dest / "job_state").read_bytes() == b"queue after the last sbatch"
    assert not (dest / "job_state.new").exists()


def test_a_same_size_rewrite_within_the_second_is_copied_again(tmp_path: Path) -> None:
    """rsync's quick check with the replication's flags compares mtimes to the nanosecond: two saves of the same
    size within one second (slurmctld's job_state) both reach the standby."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    second = 1_700_000_000 * 10**9
    for content, offset in ((b"queue v14", 100_000_000), (b"queue v15", 600_000_000)):
        (src / "job_state").write_bytes(content)
        os.utime(src / "job_state", ns=(second + offset, second + offset))
        subprocess.run(["rsync", *FIDELITY, f"{src}/", f"{dest}/"], check=True)
        assert (dest / "job_state").read_bytes() == content


def test_outside_the_initial_pid_namespace_every_new_name_counts_as_still_written(tmp_path: Path) -> None:
    """A daemon in a container or lab host cannot see a writer outside it in /proc: no name is called finished."""
    from haoscar.replication import writers

    fake_proc = tmp_path / "proc"
    (fake_proc / "self" / "ns").mkdir(parents=True)
    (fake_proc / "self" / "ns" / "pid").write_text("")  # any inode but the initial namespace's
    assert not writers.sees_every_process(str(fake_proc))
    assert writers.sees_every_process()  # the tests run in the machine's own namespace
