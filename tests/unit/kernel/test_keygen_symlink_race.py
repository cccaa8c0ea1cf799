"""``haoscar ha keygen --out`` against a local unprivileged user's traps (issue 10, finding 6: a symlink race).

The attacker is a real unprivileged user (uid/gid 65534, no groups, through ``setpriv``) who plants a symbolic
link, a hard link or a file of their own at the output path, or a symlinked directory on the way, in a
world-writable sticky directory like /tmp; or who owns a world-writable directory without the sticky bit. Root
then runs ``haoscar ha keygen --out`` there: it must refuse (exit 2, a message naming the path), write nothing
and leave the link's target untouched. The legitimate path, a root-only directory, still gets a 0600 key.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.fsutil import atomic_write
from haoscar.keys import load_key

HAOSCAR = str(Path(sys.executable).with_name("haoscar"))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*argv: str) -> None:
    subprocess.run([*NOBODY, *argv], check=True, capture_output=True, timeout=30)


def keygen(out: Path, *extra: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HAOSCAR_STATE_DIR": str(state), "COLUMNS": "200"}
    return subprocess.run(
        [HAOSCAR, "ha", "keygen", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp (in /tmp, so that uid 65534 can reach it)."""
    path = Path(tempfile.mkdtemp(prefix="haoscar-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root file the attacker would like overwritten (or read)."""
    path = tmp_path / "victim"
    path.write_text("original\n")
    path.chmod(0o644)
    return path


def assert_refused(done: subprocess.CompletedProcess[str], phrase: str) -> None:
    assert done.returncode == 2, done
    assert phrase in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("force", [False, True])
def test_a_planted_symlink_at_the_output_path_is_refused(
    shared: Path, victim: Path, tmp_path: Path, force: bool
) -> None:
    out = shared / "ha.key"
    as_nobody("ln", "-s", str(victim), str(out))
    done = keygen(out, *(["--force"] if force else []), state=tmp_path / "state")
    if force:
        assert_refused(done, f"{out} is a symbolic link; refusing to write a key through it")
    else:
        assert_refused(done, f"{out} is a symbolic link")
    assert victim.read_text() == "original\n"
    assert out.is_symlink() and os.readlink(out) == str(victim)
    assert [p.name for p in shared.iterdir()] == ["ha.key"]  # no temporary file left behind either


def test_a_dangling_symlink_into_the_attackers_directory_is_refused(shared: Path, tmp_path: Path) -> None:
    loot = shared / "loot"
    as_nobody("mkdir", str(loot))
    out = shared / "ha.key"
    as_nobody("ln", "-s", str(loot / "stolen.key"), str(out))
    done = keygen(out, state=tmp_path / "state")
    assert_refused(done, "is a symbolic link")
    assert not (loot / "stolen.key").exists()


def test_a_file_or_hard_link_of_the_attacker_is_not_reused(shared: Path, tmp_path: Path) -> None:
    out = shared / "ha.key"
    as_nobody("sh", "-c", f"umask 0; echo planted > {out}; ln {out} {shared / 'copy'}")
    done = keygen(out, "--force", state=tmp_path / "state")
    assert_refused(done, "belongs to uid 65534")
    assert (shared / "copy").read_text() == "planted\n"
    assert out.read_text() == "planted\n"


def test_a_symlinked_directory_of_the_attacker_on_the_way_is_refused(shared: Path, tmp_path: Path) -> None:
    target = tmp_path / "etc"
    target.mkdir()
    as_nobody("ln", "-s", str(target), str(shared / "etc"))
    done = keygen(shared / "etc" / "ha.key", state=tmp_path / "state")
    assert_refused(done, f"{shared / 'etc'} is a symbolic link of uid 65534")
    assert list(target.iterdir()) == []


def test_a_world_writable_directory_without_the_sticky_bit_is_refused(shared: Path, tmp_path: Path) -> None:
    open_dir = shared / "open"
    as_nobody("sh", "-c", f"mkdir {open_dir} && chmod 0777 {open_dir}")
    done = keygen(open_dir / "ha.key", state=tmp_path / "state")
    assert_refused(done, "belongs to uid 65534")
    root_open = tmp_path / "open"
    root_open.mkdir()
    root_open.chmod(0o777)
    done = keygen(root_open / "ha.key", state=tmp_path / "state")
    assert_refused(done, "is writable by others and not sticky (mode 0777)")
    assert list(root_open.iterdir()) == []


def test_the_legitimate_paths_still_work(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "haoscar" / "ha.key"
    done = keygen(out, state=tmp_path / "state")
    assert done.returncode == 0, done
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.stat().st_uid == 0
    first = load_key(out)
    assert_refused(keygen(out, state=tmp_path / "state"), "already exists; pass --force")
    assert load_key(out) == first
    assert keygen(out, "--force", state=tmp_path / "state").returncode == 0
    assert load_key(out) != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["ha.key"]
    link = tmp_path / "link"
    link.symlink_to(out.parent)  # root's own symbolic link to root's directory is followed
    assert keygen(link / "other.key", state=tmp_path / "state").returncode == 0
    assert len(load_key(out.parent / "other.key")) == 32


def test_atomic_write_never_chmods_or_writes_through_a_planted_symlink(shared: Path, victim: Path) -> None:
    out = shared / "state.json"
    as_nobody("ln", "-s", str(victim), str(out))
    assert atomic_write(out, "original\n", mode=0o666)  # same bytes as the victim: once, this chmodded it
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_text() == "original\n"
    assert not out.is_symlink() and out.stat().st_uid == 0
