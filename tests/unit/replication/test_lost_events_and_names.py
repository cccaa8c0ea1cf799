"""Lost inotify events force a full pass and keep the standby not in sync until it completes; file names with rsync
wildcard characters stand for themselves only (real rsync, local copies)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest
from manager_fakes import SyncedDb, source_manager

from haoscar.replication import files as files_mod
from haoscar.replication.changes import Batch
from haoscar.replication.config import Tree
from haoscar.replication.rsync import RsyncResult, _excludes
from haoscar.replication.state import PersistedState


def _rsync(src: Path, dst: Path, names: list[str], writing: list[str]) -> None:
    """What a batch does (``--files-from`` plus the excludes of files still being written), to a local directory."""
    tree = Tree(path=src, excludes=(), module="m")
    argv = ["rsync", "-a", "-r", "--relative", "--from0", "--files-from=-", *_excludes(tree, writing), f"{src}/",
            f"{dst}/"]  # fmt: skip
    listing = b"".join(name.encode() + b"\0" for name in names)
    subprocess.run(argv, input=listing, check=True, capture_output=True)


def test_a_name_with_wildcards_excludes_only_itself(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for name in ("a*", "abc", "a?", "ab", "[x]", "x", "d"):
        (src / name).write_text(name)
    # `a*`, `a?` and `[x]` are being written (excluded); `abc`, `ab` and `x` match them as patterns.
    _rsync(src, dst, ["abc", "ab", "x", "a*", "a?", "[x]"], writing=["a*", "a?", "[x]"])
    assert sorted(p.name for p in dst.iterdir()) == ["ab", "abc", "x"]
    # Once closed, the files named like patterns arrive, and only they (no `d`): names in a batch are literal.
    _rsync(src, dst, ["a*", "a?", "[x]"], writing=[])
    assert sorted(p.name for p in dst.iterdir()) == ["[x]", "a*", "a?", "ab", "abc", "x"]
    assert all((dst / name).read_text() == name for name in ("a*", "abc", "[x]", "x"))


def test_an_inotify_overflow_forces_a_full_pass_and_not_in_sync_until_it_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, events = source_manager(tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    passes: list[str] = []
    release = asyncio.Event()

    async def fake_rsync(argv: list[str], stdin: bytes | None = None) -> RsyncResult:
        if stdin is None:  # a full pass: held until the test lets it finish
            passes.append("full")
            await release.wait()
        return RsyncResult(0, "")

    monkeypatch.setattr(files_mod, "run_rsync", fake_rsync)
    monkeypatch.setattr(files_mod, "full_argv", lambda *_a, **_k: ["rsync"])

    async def scenario() -> None:
        cfg = made.cfg
        object.__setattr__(cfg, "trees", (Tree(path=tree, excludes=(), module="t"),))
        object.__setattr__(cfg, "full_pass_s", 600.0)
        replicator = files_mod.FileReplicator(cfg, made._file_result)
        made.files = replicator
        made.db_source = SyncedDb()  # type: ignore[assignment]
        made._set_stale(False, "")
        await replicator.start()
        release.set()
        await _until(lambda: replicator.full_pass_ok and not replicator._full_now.is_set())
        assert not PersistedState.load(tmp_path / "replication").standby_stale
        release.clear()
        passes.clear()
        # The kernel's queue overflows: watchdog logs it (that is all it does); replication must react.
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        await _until(lambda: passes == ["full"])
        assert PersistedState.load(tmp_path / "replication").standby_stale  # while the pass runs
        assert not replicator.drained()
        release.set()
        await _until(lambda: not PersistedState.load(tmp_path / "replication").standby_stale)
        assert replicator.drained()
        await replicator.stop()

    asyncio.run(scenario())
    lost = [e for e in events if e.kind == "replication.failed" and "lost" in e.message]
    assert lost and "overflow" in lost[0].message
    kinds = [e.kind for e in events]
    overflow_at = kinds.index("replication.failed")
    assert "replication.stale" in kinds[overflow_at:] and kinds[-1] == "replication.in_sync"


async def _until(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_batch_listing_is_literal() -> None:
    batch = Batch(paths=["a*", "[x]"], deletes=["?"])
    assert batch.files_from() == b"?\0a*\0[x]\0"


def test_a_watch_limit_watchdog_would_swallow_is_reported() -> None:
    import errno

    from haoscar.replication import watcher

    def add_watch(_self: object, _path: bytes) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    heard: list[str] = []
    forget = watcher.listen_for_lost_events(heard.append)
    try:
        with pytest.raises(OSError):
            watcher._watch_limit_seen(add_watch)(object(), b"/home/new-dir")
    finally:
        forget()
    assert len(heard) == 1 and "max_user_watches" in heard[0]
    # and the wrapper is what watchdog's inotify uses to add every watch (new directories included)
    assert "_watch_limit_seen" in watcher.InotifyFD.add_callback.__qualname__
