"""Run by test_fanwatch.py inside a private mount namespace (``unshare --mount --propagation private``): a write
through a file handle on a disconnected dentry, watched by both the inotify path and the fanotify path.

An ext4 image is mounted (a loop device), a file is written by name and its handle taken, then the file system is
unmounted and mounted again: the kernel's dentries are gone, as after memory pressure on a long-running NFS
server, so ``open_by_handle_at`` returns a disconnected dentry. Prints one JSON object: what ``/proc/self/fd``
showed for the handle's fd, what the inotify watcher noted and what the fanotify watcher noted (relative path ->
kind), and the content written.

Usage: python handle_write_scenario.py WORK_DIR [disconnected|connected|outside]   (connected: no remount, the
dentry is still the file's usual one; outside: the file lies outside the watched tree and is written twice)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from haoscar.replication.changes import ChangeSet
from haoscar.replication.fanwatch import HandleWatch
from haoscar.replication.fhandle import name_to_handle, open_by_handle
from haoscar.replication.watcher import start_observer


def _mount(image: Path, mnt: Path) -> None:
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True, capture_output=True)


def _unmount(image: Path, mnt: Path) -> None:
    subprocess.run(["umount", str(mnt)], check=True)
    # The loop device is detached when the superblock is gone (with its dentries): only then remount.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        attached = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=False)
        if not attached.stdout.strip():
            return
        time.sleep(0.05)
    raise SystemExit(f"{image} still attached to a loop device 20 s after umount")


def _pending(changes: ChangeSet) -> dict[str, str]:
    return {rel: entry.kind for rel, entry in changes._pending.items()}


def main(work: Path, mode: str) -> None:
    image, mnt = work / "fs.img", work / "mnt"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    _mount(image, mnt)
    (mnt / "tree" / "alice").mkdir(parents=True)
    target = mnt / ("other" if mode == "outside" else "tree") / "alice" / "notes.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("one\n")
    handle = name_to_handle(target)
    if mode != "connected":
        _unmount(image, mnt)
        _mount(image, mnt)
    try:
        by_inotify, by_fanotify = ChangeSet(mnt / "tree"), ChangeSet(mnt / "tree")
        observer = start_observer([by_inotify])
        lost: list[str] = []
        fan = HandleWatch([by_fanotify], lost.append)
        fan.start()
        time.sleep(0.3)  # the observer's watches are set up in its thread
        mount_fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
        seen_as = ""
        for text in ["two\n", "three\n"] if mode == "outside" else ["two\n"]:
            fd = open_by_handle(mount_fd, handle, os.O_WRONLY | os.O_APPEND)
            seen_as = os.readlink(f"/proc/self/fd/{fd}")
            os.write(fd, text.encode())
            os.close(fd)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (_pending(by_fanotify) or _pending(by_inotify) or fan.walks):
                time.sleep(0.05)
            time.sleep(0.5)  # give inotify the same chance
        observer.stop()
        observer.join(5)
        fan.stop()
        os.close(mount_fd)
        result = {
            "seen_as": seen_as,
            "inotify": _pending(by_inotify),
            "fanotify": _pending(by_fanotify),
            "lost": lost,
            "walks": fan.walks,
            "content": target.read_text(),
        }
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "disconnected")
