"""``haoscar node sync`` onto a node installed from the real Debian image (a qemu VM, ``scenarios.real_node``): the
check the VM tests and the cluster demo call once their node answers ssh.

1. A new version of the node's image is made on the head: the current tree plus one file (hard links: no copy).
2. ``node sync NODE --dry-run --json`` lists that file as new and changes nothing on the node.
3. ``node sync NODE --json`` transfers it: the file is on the node, the node's host name, ssh host keys, machine-id
   and fstab are the ones it had, ssh with the cluster key still works, and ``node list`` shows the new version;
   a last dry run reports what still differs (``after``: the cluster's accounts, typically).

It raises ``NodeSyncCheckFailed`` naming what did not hold; it returns what it measured (a plain dict).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from haoscar.provision.images import ImageStore
from haoscar.scenarios.cluster_lab import HOST_STATE_DIR, haoscar_on
from haoscar.scenarios.real_node import IMAGE, RealNode

# What must survive a sync untouched (docs/node-sync.md): read over ssh before and after.
IDENTITY = "cat /etc/hostname /etc/machine-id /etc/fstab; cat /etc/ssh/ssh_host_*_key.pub | sort"


class NodeSyncCheckFailed(AssertionError):
    """A step of the check did not hold (the message says which, with what haoscar printed)."""


def _json(done: subprocess.CompletedProcess[str], what: str, expect_rc: int = 0) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        data = {}
    if done.returncode != expect_rc:
        # Each node's status and reason (the path lists can be thousands of lines).
        said = {
            node: {k: v for k, v in result.items() if k != "paths"} for node, result in data.get("results", {}).items()
        }
        raise NodeSyncCheckFailed(
            f"{what} exited {done.returncode}: {said or done.stdout[-2000:]} {done.stderr[-2000:]}"
        )
    return data


def new_version_with(state: Path, relative: str, text: str) -> int:
    """A new version of ``IMAGE`` in the head's store ``state``: the current tree (hard-linked) plus one file."""
    store = ImageStore(state)
    current = store.current_root(IMAGE)
    with tempfile.TemporaryDirectory(prefix=".sync-check-", dir=state) as tmp:
        tree = Path(tmp) / "root"
        subprocess.run(["cp", "-al", str(current), str(tree)], check=True)
        target = tree / relative.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        meta = store.import_tree(IMAGE, tree)
        shutil.rmtree(tree)
    return meta.version


def _identity(node: RealNode) -> str:
    done = node.ssh(IDENTITY)
    if done.returncode != 0 or not done.stdout.strip():
        raise NodeSyncCheckFailed(f"cannot read {node.name}'s identity over ssh: {done.stderr.strip()}")
    return done.stdout


def _sync(node: RealNode, head: str, *args: str, timeout: float) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = haoscar_on(node.lab, head, "node", "sync", node.name, "--json", *args, timeout=timeout)
    report = _json(done, f"node sync {node.name} {' '.join(args)}")
    return report["results"][node.name], round(time.monotonic() - started, 1)


def _by_top_dir(paths: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        top = "/".join(path.split("/")[:4])
        counts[top] = counts.get(top, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:10])


def check_node_sync(node: RealNode, *, head: str | None = None, timeout: float = 900.0) -> dict[str, Any]:
    """The check of the module docstring, run from ``head`` (default: the head that installed the node)."""
    head = head or node.head
    state = node.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")
    added = f"/usr/local/share/haoscar-sync-check/{secrets.token_hex(4)}"
    text = f"added by image version check {added}\n"
    version = new_version_with(state, added, text)
    before = _identity(node)

    dry, dry_s = _sync(node, head, "--dry-run", timeout=timeout)
    if dry["status"] != "would sync" or dry["version"] != version or added not in dry["paths"]["new"]:
        raise NodeSyncCheckFailed(f"the dry run did not list {added} as new in version {version}: {dry}")
    if node.ssh(f"test -e {added}").returncode != 1:
        raise NodeSyncCheckFailed(f"the dry run put {added} on {node.name}")

    synced, sync_s = _sync(node, head, timeout=timeout)
    if synced["status"] != "synced" or added not in synced["paths"]["new"]:
        raise NodeSyncCheckFailed(f"node sync did not sync {node.name} to version {version}: {synced}")
    got = node.ssh(f"cat {added}")
    if got.returncode != 0 or got.stdout != text:
        raise NodeSyncCheckFailed(f"{added} is not on {node.name} after the sync: {got.stdout!r} {got.stderr!r}")
    after = _identity(node)
    if after != before:
        raise NodeSyncCheckFailed(f"{node.name}'s own files changed in the sync:\nbefore:\n{before}\nafter:\n{after}")

    # A second dry run: what still differs from the image after the sync (the cluster's accounts, typically).
    again, _s = _sync(node, head, "--dry-run", timeout=timeout)
    listed = haoscar_on(node.lab, head, "node", "list", node.name, "--json")
    rows = json.loads(listed.stdout) if listed.returncode == 0 else []
    if [row.get("image_version") for row in rows] != [version]:
        raise NodeSyncCheckFailed(f"node list does not show version {version} for {node.name}: {listed.stdout}")
    return {
        "node": node.name,
        "version": version,
        "previous_version": synced["previous_version"],
        "dry_run": {key: dry[key] for key in ("changed", "new", "deleted")},
        "dry_run_s": dry_s,
        "sync": {key: synced[key] for key in ("changed", "new", "deleted")},
        "sync_s": sync_s,
        "after": {key: again[key] for key in ("changed", "new", "deleted")},
        "after_paths": {key: again["paths"][key][:20] for key in ("changed", "new", "deleted")},
        "changed_by_top_dir": _by_top_dir(synced["paths"]["changed"]),
        "kept": "hostname, machine-id, fstab, ssh host keys",
    }
