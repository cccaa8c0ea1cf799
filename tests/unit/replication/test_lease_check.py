"""The kernel's answer to "is this new name still being written?" (``writers.still_written``): a read lease is
refused while any process holds the inode open for writing, in whatever PID namespace, so a replication daemon
in a lab host or a container ships slurmctld's linked ``job_state`` at the next batch as a real head does."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

from haoscar.replication.writers import Inode, still_written


def inode_of(path: Path) -> Inode:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_a_writer_is_seen_and_a_reader_is_not(tmp_path: Path) -> None:
    path = tmp_path / "job_state"
    path.write_bytes(b"queue")
    files = {inode_of(path): str(path)}
    assert still_written(files) == set()
    with open(path, "rb"):
        assert still_written(files) == set()
    with open(path, "ab"):
        assert still_written(files) == set(files)
    with open(path, "r+b"):
        assert still_written(files) == set(files)
    assert still_written(files) == set()


def test_a_shared_writable_mapping_counts_as_a_writer_after_its_descriptor_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "mapped"
    path.write_bytes(b"x" * 4096)
    files = {inode_of(path): str(path)}
    with open(path, "r+b") as handle:
        mapping = mmap.mmap(handle.fileno(), 4096)
    try:
        assert still_written(files) == set(files)  # the /proc scan could not see this one
    finally:
        mapping.close()
    assert still_written(files) == set()


def test_a_name_that_now_names_another_file_is_not_called_finished(tmp_path: Path) -> None:
    path = tmp_path / "job_state"
    path.write_bytes(b"v1")
    old = inode_of(path)
    keep = tmp_path / "v1"
    os.link(path, keep)  # keeps the old inode alive, so its number cannot be reused by the new file
    path.unlink()
    with open(path, "wb") as writer:
        writer.write(b"v2, being written")
        writer.flush()
        # The old inode is asked for by the name that now holds a file being written: the answer is "held", not
        # the lease of the other inode.
        assert still_written({old: str(path)}) == {old}


def test_a_writer_outside_the_checkers_pid_namespace_is_seen(tmp_path: Path) -> None:
    """The check runs in a PID namespace of its own (as the replication daemon of a lab host does) while this
    process, outside it, holds the file open for writing."""
    path = tmp_path / "job_state"
    path.write_bytes(b"partial")
    ino = inode_of(path)
    probe = (
        "import os, sys; from haoscar.replication.writers import sees_every_process, still_written; "
        f"print(sees_every_process(), sorted(still_written({{({ino[0]}, {ino[1]}): {str(path)!r}}})))"
    )
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    argv = ["unshare", *user, "--pid", "--fork", "--mount-proc", sys.executable, "-c", probe]
    with open(path, "ab"):
        inside = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert inside.stdout.split("\n")[0] == f"False [({ino[0]}, {ino[1]})]", inside.stderr
    after = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert after.stdout.split("\n")[0] == "False []", after.stderr
