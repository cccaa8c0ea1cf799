"""fsutil.atomic_write: the one writer of whole files (keys, replication state, netboot files, image metadata)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from haoscar import fsutil
from haoscar.fsutil import atomic_write
from haoscar.keys import generate_key, load_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_the_data_with_the_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "secret"
    assert atomic_write(target, "s3cret\n", mode=0o600) is True
    assert target.read_text() == "s3cret\n"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret"]


def test_the_same_content_is_not_written_again_but_its_mode_is_corrected(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    atomic_write(target, b"x=1\n")
    inode = target.stat().st_ino
    os.chmod(target, 0o666)
    assert atomic_write(target, "x=1\n") is False
    assert target.stat().st_ino == inode
    assert _mode(target) == 0o644


def test_compare_false_always_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write(target, "{}")
    inode = target.stat().st_ino
    assert atomic_write(target, "{}", compare=False, durable=False) is True
    assert target.stat().st_ino != inode


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "old")

    def broken(_src: object, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_generated_key_is_private_and_force_replaces_it(tmp_path: Path) -> None:
    path = generate_key(tmp_path / "ha.key")
    first = load_key(path)
    assert _mode(path) == 0o600
    assert load_key(generate_key(path, force=True)) != first
