"""``haoscar node sync``'s work on the nodes (SystemImager's ``si_updateclient``, pushed from the head): a probe
that refuses a node which must never receive an image, rsync of an image version onto the others through
ClusterShell (``fanout.run_local``: one rsync here per node, over haoscar's ssh configuration), and the reading of
what came back. The rules of what is sent are in ``node_sync_rules``.

Two checks, each enough on its own, keep an image off a root file system it must never replace (a lab host is a
namespace whose ``/boot``, ``/tmp`` and ``/work`` are this machine's):

1. the probe, before any rsync starts: a node holding ``/etc/haoscar/no-image-sync`` (its text is the reason) or
   running on this machine's kernel (same ``boot_id``: a container, or this machine itself) is refused;
2. the same two tests again in the very ssh session rsync runs in (``--rsync-path``, ``node_sync_rules.remote_guard``),
   so a node that changed between the probe and the transfer is refused too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.provision import fanout
from haoscar.provision.node_sync_rules import (
    GUARD_EXIT,
    MARKER,
    REFUSED,
    Changes,
    filter_rules,
    parse_itemized,
    rsync_command,
)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MOUNTS = "haoscar-mounts:"
# The node's boot id, its mount points (left alone by the sync), then the marker's text if it has one.
PROBE_COMMAND = (
    f"cat {BOOT_ID}; echo {MOUNTS}; cut -d ' ' -f 2 /proc/mounts; "
    f"if [ -e {shlex.quote(MARKER)} ]; then echo {REFUSED}; head -c 500 {shlex.quote(MARKER)}; fi"
)
# After the files: systemd reads the units the new version brought (a node without systemd skips it).
RELOAD_COMMAND = "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi"


def local_boot_id() -> str:
    """This machine's kernel boot id (every namespace and container on it reads the same)."""
    return BOOT_ID.read_text().strip()


@dataclass(frozen=True)
class Verdict:
    """How a node ended: ``status`` one of synced, would sync (dry run), refused, unreachable, failed, timed out."""

    status: str
    reason: str = ""
    changes: Changes = field(default_factory=Changes)

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "would sync")


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash in paths as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(stdout: list[str]) -> list[str]:
    """The node's mount points, from the probe's answer."""
    if MOUNTS not in stdout:
        return []
    after = stdout[stdout.index(MOUNTS) + 1 :]
    lines = after[: after.index(REFUSED)] if REFUSED in after else after
    return [_unescape(line.strip()) for line in lines if line.strip()]


def refusal(stdout: list[str], our_boot_id: str) -> str | None:
    """Why the probe's answer forbids a sync (the marker's text, or the shared kernel); None: the node may sync."""
    if REFUSED in stdout:
        said = " ".join(line.strip() for line in stdout[stdout.index(REFUSED) + 1 :] if line.strip())
        return f"{MARKER}: {said or 'present (no reason written in it)'}"
    boot_id = stdout[0].strip() if stdout else ""
    if not boot_id:
        return "it did not say its boot id; not syncing a node that cannot be told from this machine"
    if boot_id == our_boot_id:
        return "it runs on this machine's own kernel (a container or this machine itself): never synced"
    return None


def write_filters(work: Path, node: str, mounts: list[str], installed: Sequence[str] = ()) -> Path:
    """The node's rsync filter file (``node_sync_rules.filter_rules`` with its mount points), private to root,
    ``WORK/NODE.filter``: the rsync command names ``WORK/%h.filter``."""
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = work / f"{node}.filter"
    rules = "".join(f"{rule}\n" for rule in filter_rules(mounts, installed))
    atomic_write(
        path, f"# Written by haoscar node sync for {node} (docs/node-sync.md)\n{rules}", mode=0o600, durable=False
    )
    return path


def filters_for_every_node(work: Path) -> Path:
    """What the rsync command line names: ClusterShell puts each node's name for ``%h``."""
    return work / "%h.filter"


def rsync_verdict(outcome: fanout.Outcome, *, dry_run: bool, command_timeout: float) -> Verdict:
    """One node's rsync outcome; ``unreachable`` is left to the caller (it knows ssh's messages)."""
    changes = parse_itemized(outcome.stdout)
    said = [line.strip() for line in outcome.stderr if line.strip()]
    refused = next((line for line in said if line.startswith(REFUSED)), None)
    if refused is not None or outcome.rc == GUARD_EXIT:
        reason = refused.removeprefix(REFUSED).strip() if refused else "refused by the node's guard"
        return Verdict("refused", reason)
    if outcome.timed_out:
        return Verdict("timed out", f"after {command_timeout:g} s", changes)
    if outcome.rc == 0:
        return Verdict("would sync" if dry_run else "synced", "", changes)
    errors = [line for line in said if line.startswith(("rsync:", "rsync error:"))] or said
    reason = "; ".join(errors[:2]) or f"rsync exited {outcome.rc}"
    return Verdict("failed", f"rsync exited {outcome.rc}: {reason}", changes)


@dataclass(frozen=True)
class Transfer:
    """One image version onto some nodes."""

    nodes: list[str]
    root: Path
    dry_run: bool


def run_transfer(
    transfer: Transfer, config: Path, filters: Path, limits: fanout.Limits, run: fanout.LocalRunner
) -> dict[str, fanout.Outcome]:
    """rsync of ``transfer.root`` onto every node's ``/``, ``limits.fanout`` at a time (ClusterShell)."""
    command = rsync_command(
        transfer.root,
        config,
        filters,
        local_boot_id(),
        dry_run=transfer.dry_run,
        connect_timeout=limits.connect_timeout,
    )
    return run(transfer.nodes, command, limits, config)
