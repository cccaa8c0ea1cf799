"""fanotify for the exported trees (replication/fanwatch.py): a write through a file handle on a disconnected dentry,
as an NFS server makes after the kernel evicted the file's dentry, raises no inotify event; the fanotify watcher
notes it under the right path. Real kernel objects: an ext4 image on a loop device, mounted in a private mount
namespace (``unshare``), so that no other process's namespace keeps its dentries alive.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import struct
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from haoscar.replication import fanwatch
from haoscar.replication.changes import ChangeSet
from haoscar.replication.config import ReplConfig, Tree, trees_of
from haoscar.replication.fanwatch import HandleWatch, HandleWatchUnavailable, kind_of
from haoscar.replication.fhandle import (
    FAN_ATTRIB,
    FAN_CLOSE_WRITE,
    FAN_EVENT_INFO_TYPE_DFID_NAME,
    FAN_EVENT_INFO_TYPE_FID,
    FAN_MODIFY,
    FAN_Q_OVERFLOW,
    Handle,
    parse_events,
)
from haoscar.replication.files import FileReplicator
from haoscar.spec import check_text

SCENARIO = Path(__file__).with_name("handle_write_scenario.py")


def _scenario(work: Path, mode: str) -> dict[str, object]:
    if os.geteuid() != 0:
        pytest.fail("needs root: a loop mount in a private mount namespace, fanotify (CAP_SYS_ADMIN)")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, str(SCENARIO), str(work), mode],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_write_through_a_handle_on_a_disconnected_dentry_is_noted_by_fanotify_where_inotify_sees_none(
    tmp_path: Path,
) -> None:
    got = _scenario(tmp_path, "disconnected")
    assert got["content"] == "one\ntwo\n"  # the write happened
    assert got["seen_as"] == "/"  # the kernel did not know the file's path: a disconnected dentry
    assert got["inotify"] == {}  # the premise: no inotify event for it, so without fanotify only a full pass ships it
    assert got["fanotify"] == {"alice/notes.txt": "file"}  # closed after the write: ready to ship
    assert got["walks"] == 1 and got["lost"] == []


def test_a_write_through_a_handle_on_a_connected_dentry_is_left_to_inotify(tmp_path: Path) -> None:
    got = _scenario(tmp_path, "connected")
    assert got["seen_as"] == str(tmp_path / "mnt" / "tree" / "alice" / "notes.txt")
    assert got["inotify"] == {"alice/notes.txt": "file"}
    assert got["fanotify"] == {} and got["walks"] == 0  # the kernel named it: skipped without a system call


def test_a_file_outside_the_trees_costs_one_walk_not_one_per_write(tmp_path: Path) -> None:
    got = _scenario(tmp_path, "outside")
    assert got["content"] == "one\ntwo\nthree\n" and got["seen_as"] == "/"
    assert got["inotify"] == {} and got["fanotify"] == {}  # not replicated: it is in no tree
    assert got["walks"] == 1  # the second write's event is known to be outside the trees


def _event(mask: int, infos: list[tuple[int, bytes]]) -> bytes:
    body = b""
    for kind, handle in infos:
        fid = struct.pack("=ii", 7, 9) + struct.pack("=Ii", len(handle), 1) + handle
        if kind == FAN_EVENT_INFO_TYPE_DFID_NAME:
            fid += b"notes.txt\0"
        fid += b"\0" * (-len(fid) % 4)
        body += struct.pack("=BBH", kind, 0, 4 + len(fid)) + fid
    return struct.pack("=IBBHQii", 24 + len(body), 3, 0, 24, mask, -1, 1234) + body


def test_events_are_parsed_into_handles_and_whether_the_kernel_gave_a_name() -> None:
    buf = (
        _event(FAN_MODIFY, [(FAN_EVENT_INFO_TYPE_DFID_NAME, b"dir-h\0\0\0"), (FAN_EVENT_INFO_TYPE_FID, b"file-h12")])
        + _event(FAN_CLOSE_WRITE, [(FAN_EVENT_INFO_TYPE_FID, b"lonely12")])
        + _event(FAN_Q_OVERFLOW, [])
    )
    named, lonely, overflow = parse_events(buf)
    assert (named.mask, named.named, named.handle) == (FAN_MODIFY, True, Handle(1, b"file-h12"))
    assert (lonely.mask, lonely.named, lonely.handle) == (FAN_CLOSE_WRITE, False, Handle(1, b"lonely12"))
    assert (overflow.mask, overflow.handle) == (FAN_Q_OVERFLOW, None)


def test_event_kinds_match_the_inotify_path() -> None:
    regular, fifo = 0o100644, 0o010644
    assert kind_of(FAN_MODIFY, regular) == ("write", False)  # still being written: wait for the close or quiet
    assert kind_of(FAN_MODIFY | FAN_CLOSE_WRITE, regular) == ("file", False)
    assert kind_of(FAN_ATTRIB, regular) == ("write", True)  # the writer check decides, as for inotify's IN_ATTRIB
    assert kind_of(FAN_ATTRIB, fifo) == ("file", False)


def test_a_kernel_without_the_flags_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def unsupported(flags: int, event_f_flags: int = os.O_RDONLY) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(fanwatch, "fanotify_init", unsupported)
    with pytest.raises(HandleWatchUnavailable, match=r"this kernel \(.+\) lacks fanotify .*Linux 5\.9"):
        HandleWatch([ChangeSet(tmp_path)], lambda why: None).start()


def test_the_replication_says_loudly_when_exported_trees_cannot_be_watched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refused(flags: int, event_f_flags: int = os.O_RDONLY) -> int:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fanwatch, "fanotify_init", refused)
    cfg = _config(tmp_path)
    notices: list[str] = []
    replicator = FileReplicator(cfg, lambda *a: None, notices.append)
    replicator._watch_handles(asyncio.new_event_loop())
    assert replicator.handle_watch is None
    [notice] = notices
    assert f"writes made over NFS to {tmp_path / 'home'} may reach the standby only at the next full pass" in notice
    assert "every 600 s" in notice and "CAP_SYS_ADMIN" in notice


def _config(tmp_path: Path) -> ReplConfig:
    (tmp_path / "home").mkdir()
    trees = (Tree(tmp_path / "home", (), "t0", handles=True), Tree(tmp_path / "etc", (), "t1"))
    return ReplConfig(
        node="head1", peer="head2", local_ip=None, peer_ip=None, db_port=1, rsync_port=2,  # type: ignore[arg-type]
        trees=trees, state_dir=tmp_path, key_file=tmp_path / "k", batch_s=0.075, full_pass_s=600.0,
        lag_alert_s=5.0, ack_timeout_s=2.0,
    )  # fmt: skip


def test_exported_trees_are_the_ones_watched_for_handle_writes() -> None:
    raw = yaml.safe_load((files("haoscar") / "data" / "lab.yaml").read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = "198.18.0.3"
    raw["ha"]["services"] = [{"name": "nfs", "kind": "nfs-ganesha"}]
    raw["nfs"] = {"exports": [{"path": "/home/projects"}, {"path": "/srv/data"}]}
    spec, problems = check_text(yaml.safe_dump(raw))
    assert spec is not None, problems
    handles = {str(t.path): t.handles for t in trees_of(spec, Path("/var/lib/haoscar"))}
    assert handles["/home"] and handles["/srv/data"]  # /home holds an export; /srv/data is one
    assert not handles["/etc/haoscar"] and not handles["/var/lib/haoscar/images"]
    del raw["ha"]["services"]  # heads that serve no NFS: inotify alone, as before
    unserved, _ = check_text(yaml.safe_dump(raw))
    assert unserved is not None and not any(t.handles for t in trees_of(unserved, Path("/var/lib/haoscar")))
