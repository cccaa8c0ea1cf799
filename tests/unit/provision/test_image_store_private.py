"""Issue 10, finding 6: a local unprivileged user on the head (``nobody``, through ``setpriv``) cannot walk into the
image store: not list it, not read a file of any version, not run an old version's setuid-root binary. The store
stays closed through every operation that makes or changes a version (import, a second version, rollback, delete)
and a store left 0755 by an earlier release is closed on first use; root's operations work as before."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.provision.images import ImageStore

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory other users can reach (pytest's tmp_path is 0700, which would hide the store anyway)."""
    top = Path(tempfile.mkdtemp(prefix="haoscar-store-", dir="/tmp"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run by nobody's shell, as a local user would. Not by setpriv's own exec: setpriv resolves the
    program's path while it still holds root's capabilities (it would run a setuid file behind a 0700 directory)."""
    shell = ["sh", "-c", 'exec "$@"', "sh", *argv]
    return subprocess.run([*NOBODY, *shell], capture_output=True, text=True, check=False)


def _tree(root: Path, release: str) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(f"NAME=golden {release}\n")
    (root / "usr/bin").mkdir(parents=True)
    old_su = root / "usr/bin/oldsu"
    shutil.copyfile("/usr/bin/id", old_su)  # stands for a setuid-root binary with a known hole
    old_su.chmod(0o4755)
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_closed(store: ImageStore, version: int) -> None:
    root = store.version_root("compute", version)
    assert _mode(store.root) == 0o700 and store.root.stat().st_uid == 0
    listing = _as_nobody("ls", str(store.root))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr
    read = _as_nobody("cat", str(root / "etc/os-release"))
    assert read.returncode != 0 and "Permission denied" in read.stderr and read.stdout == ""
    run = _as_nobody(str(root / "usr/bin/oldsu"))
    assert run.returncode != 0 and "uid=0" not in run.stdout, run.stdout


def test_nobody_cannot_reach_any_version_and_root_still_works(state: Path, tmp_path: Path) -> None:
    (state / "public.txt").write_text("readable\n")
    (state / "public.txt").chmod(0o644)
    # The control: nobody reaches the state directory itself, so what follows is the store's own mode.
    assert _as_nobody("cat", str(state / "public.txt")).stdout == "readable\n"

    store = ImageStore(state)
    first = store.import_tree("compute", _tree(tmp_path / "v1", "1"))
    # Inside the store the tree keeps its modes (the node gets its setuid binary); only the store's gate closes.
    assert _mode(store.version_root("compute", 1) / "usr/bin/oldsu") == 0o4755
    _assert_closed(store, first.version)

    second = store.import_tree("compute", _tree(tmp_path / "v2", "2"))
    _assert_closed(store, 1)
    _assert_closed(store, second.version)

    assert store.rollback("compute") == 1
    _assert_closed(store, 1)
    assert (store.current_root("compute") / "etc/os-release").read_text() == "NAME=golden 1\n"
    assert store.delete("compute", 2) == [2]
    _assert_closed(store, 1)
    assert [s.name for s in store.list()] == ["compute"]


def test_a_store_left_open_by_an_earlier_release_is_closed_on_first_use(state: Path, tmp_path: Path) -> None:
    store = ImageStore(state)
    store.import_tree("compute", _tree(tmp_path / "v1", "1"))
    store.root.chmod(0o755)  # as an earlier release left it (the store and each version 0755)
    store.version_root("compute", 1).parent.chmod(0o755)
    assert _as_nobody("cat", str(store.version_root("compute", 1) / "etc/os-release")).returncode == 0

    # What the boot server does for each installing node: the store is closed again before it is served.
    assert store.current_root("compute") == store.version_root("compute", 1)
    _assert_closed(store, 1)

    store.root.chmod(0o755)
    store.rollback("compute", 1)
    _assert_closed(store, 1)
