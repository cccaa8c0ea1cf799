"""File replication between two lab heads with the real daemons: every kind of change arrives identically, a file
being written is not shipped half-written, and a switchover after drain() loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import ReplLab, repl_spec

pytestmark = pytest.mark.lab


@pytest.fixture
def heads(make_lab: MakeLab) -> Iterator[ReplLab]:
    rl = ReplLab(make_lab(), repl_spec(default_spec()))
    rl.setup()
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        yield rl
    finally:
        rl.stop_all()


def snapshot(root: Path) -> dict[str, Any]:
    """Everything rsync -aHAX promises to keep, per path; hard links as groups of names."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirs, names in os.walk(root):
        for name in sorted(dirs + names):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            entry: dict[str, Any] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
            else:
                entry["xattrs"] = {a: os.getxattr(path, a) for a in sorted(os.listxattr(path))}
            if stat.S_ISREG(st.st_mode):
                entry |= {"sha": hashlib.sha1(path.read_bytes()).hexdigest(), "mtime": st.st_mtime_ns}
                inodes.setdefault(st.st_ino, []).append(rel)
            out[rel] = entry
    out["<links>"] = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return out


def wait_same(rl: ReplLab, sub: str, timeout: float = 15.0) -> None:
    src, dst = rl.path(rl.primary, f"/home/{sub}"), rl.path(rl.standby, f"/home/{sub}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dst.exists() and snapshot(src) == snapshot(dst):
            return
        time.sleep(0.1)
    assert snapshot(dst) == snapshot(src)


def test_every_kind_of_change_appears_identically_on_the_standby(heads: ReplLab) -> None:
    rl = heads
    top = rl.path(rl.primary, "/home/u")
    top.mkdir()
    (top / "a").write_text("alpha\n")
    (top / "b").write_text("beta\n")
    (top / "gone").write_text("soon deleted\n")
    (top / "d1" / "d2").mkdir(parents=True)
    (top / "d1" / "d2" / "deep").write_text("deep\n")
    wait_same(rl, "u")

    with (top / "a").open("a") as handle:  # modify
        handle.write("more\n")
    os.link(top / "a", top / "hard")  # hard link
    os.symlink("a", top / "link")  # symlink
    os.chmod(top / "b", 0o640)  # chmod
    os.chown(top / "b", 1234, 5678)  # chown (numeric ids)
    os.setxattr(top / "a", "user.tag", b"blue")  # xattr
    subprocess.run(["setfacl", "-m", "u:4321:r", str(top / "b")], check=True)  # ACL
    os.rename(top / "b", top / "b2")  # rename
    (top / "gone").unlink()  # delete
    os.rename(top / "d1", top / "d9")  # directory rename
    wait_same(rl, "u")
    dst = rl.path(rl.standby, "/home/u")
    assert not (dst / "gone").exists() and not (dst / "d1").exists() and (dst / "d9/d2/deep").exists()
    assert os.getxattr(dst / "a", "user.tag") == b"blue"
    assert (
        "user:4321:r"
        in subprocess.run(["getfacl", "-cp", str(dst / "b2")], capture_output=True, text=True, check=True).stdout
    )


def test_a_file_being_written_is_not_shipped_half_written(heads: ReplLab) -> None:
    rl = heads
    src, dst = rl.path(rl.primary, "/home/w"), rl.path(rl.standby, "/home/w")
    src.mkdir()
    with (src / "slow").open("wb") as handle:
        handle.write(b"x" * 100_000)
        handle.flush()
        time.sleep(0.8)  # many batch windows: a shipped half would be on the standby by now
        assert not (dst / "slow").exists()
        handle.write(b"y" * 100_000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (dst / "slow").exists():
        time.sleep(0.02)
    assert (dst / "slow").read_bytes() == b"x" * 100_000 + b"y" * 100_000


DRAIN = """
import asyncio, json, os, sys
from pathlib import Path
from haoscar.events import EventBus
from haoscar.replication import ReplicationManager
from haoscar.spec.loader import load_spec

async def main():
    spec = load_spec("/etc/haoscar/cluster.yaml")
    manager = ReplicationManager(spec, "head1", Path("/var/lib/haoscar"), EventBus("head1"))
    await manager.start_source("head2")
    for _ in range(600):
        if not manager.status().standby_stale:
            break
        await asyncio.sleep(0.05)
    top = Path("/home/sw")
    top.mkdir()
    for i in range(200):
        (top / f"f{i}").write_bytes(os.urandom(2048))
    drained = await manager.drain(20)
    await manager.stop()  # the switchover: this head stops being the source right after
    print(json.dumps({"drained": drained}))

asyncio.run(main())
"""


def test_drain_before_a_switchover_loses_nothing(heads: ReplLab) -> None:
    rl = heads
    rl.stop(rl.primary)  # the manager is driven directly below, as the HA daemon does
    out = rl.lab.exec(rl.primary, [sys.executable, "-c", DRAIN], timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"drained": True}
    src, dst = rl.path(rl.primary, "/home/sw"), rl.path(rl.standby, "/home/sw")
    # No waiting here: drain() returned, so everything must already be there.
    assert snapshot(dst) == snapshot(src) and len(list(dst.iterdir())) == 200
