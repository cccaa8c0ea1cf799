"""``netboot sync``: regenerate every DHCP and network-boot file from the database, idempotently.

One pass (Cobbler's sync) reads a snapshot of the nodes in one query, renders, writes only what changed, removes
the files of deleted nodes and SIGHUPs a running dnsmasq when a host entry changed. The incremental path
(``nodes={"node07"}``) reads and rewrites only those nodes' files. dnsmasq is reloaded, never restarted: the main
config is only read at start, so a change to it is reported (``restart_needed``) for ``haoscar dhcp configure``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.provision import dhcp_server
from haoscar.provision.dnsmasq_conf import IPXE_BIOS, IPXE_EFI, IPXE_SOURCE_DIR, host_line, render_main
from haoscar.provision.ipxe import render_entry, render_script
from haoscar.provision.netboot_files import (
    NetbootPaths,
    same_content,
    stage_dir,
    swap_in,
    sync_dirs,
    sync_lock,
    write_file,
)
from haoscar.provision.netboot_snapshot import Database, NetbootSettings, NodeBoot, read_nodes, read_settings


@dataclass
class SyncReport:
    nodes: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    changed_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    main_changed: bool = False
    restart_needed: bool = False
    reloaded_pid: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "written": self.written,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "changed_nodes": self.changed_nodes,
            "removed_nodes": self.removed_nodes,
            "main_changed": self.main_changed,
            "restart_needed": self.restart_needed,
            "reloaded_pid": self.reloaded_pid,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class _Pass:
    paths: NetbootPaths
    durable: bool
    report: SyncReport
    hosts_changed: bool = False

    def put(self, path: Path, text: str, node: str | None, existing: set[str] | None = None) -> None:
        data = text.encode()
        known = existing is None or path.name in existing
        if known and same_content(path, data):
            self.report.unchanged += 1
            return
        write_file(path, data, durable=self.durable)
        self.report.written += 1
        if node is not None and node not in self.report.changed_nodes[-1:]:
            self.report.changed_nodes.append(node)

    def drop(self, path: Path, node: str) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self.report.removed += 1
        if node not in self.report.removed_nodes[-1:]:
            self.report.removed_nodes.append(node)
        return True


def _node_files(run: _Pass, node: NodeBoot, settings: NetbootSettings, existing: dict[str, set[str]] | None) -> None:
    paths = run.paths
    line = host_line(node)
    hosts_existing = existing["hosts"] if existing is not None else None
    if line:
        before = run.report.written
        run.put(paths.host_file(node.name), line, node.name, hosts_existing)
        run.hosts_changed |= run.report.written != before
    elif (hosts_existing is None or node.name in hosts_existing) and run.drop(paths.host_file(node.name), node.name):
        run.hosts_changed = True
    ipxe_existing = existing["ipxe"] if existing is not None else None
    run.put(paths.ipxe_file(node.name), render_script(node, settings), node.name, ipxe_existing)


def _common_files(run: _Pass, settings: NetbootSettings) -> None:
    paths = run.paths
    paths.make_dirs()
    before = run.report.written
    run.put(paths.conf, render_main(settings, paths.root), None)
    run.report.main_changed = run.report.written != before
    run.put(paths.entry_script, render_entry(settings), None)
    for name in (IPXE_BIOS, IPXE_EFI):
        source = IPXE_SOURCE_DIR / name
        target = paths.tftp_dir / name
        if source.exists() and not _same_file(source, target):
            atomic_write(target, source.read_bytes(), durable=False, compare=False)
            run.report.written += 1


def _same_file(source: Path, target: Path) -> bool:
    try:
        src, dst = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return src.st_size == dst.st_size and src.st_mtime_ns <= dst.st_mtime_ns


def _listing(directory: Path) -> set[str]:
    try:
        return {name for name in os.listdir(directory) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


def _changed(directory: Path, files: dict[str, bytes], existing: set[str], *, stop_above: int) -> set[str] | None:
    """The names whose file is missing or differs; None as soon as more than ``stop_above`` do (the directory is then
    rebuilt whole, so the rest need not be read)."""
    base = str(directory)
    changed: set[str] = set()
    for name, data in files.items():
        if name in existing:
            try:
                with open(os.path.join(base, name), "rb") as handle:
                    if handle.read(len(data) + 1) == data:
                        continue
            except FileNotFoundError:
                pass
        changed.add(name)
        if len(changed) > stop_above:
            return None
    return changed


def _full_pass(run: _Pass, snapshot: list[NodeBoot], settings: NetbootSettings) -> None:
    """Every node's files. A directory whose files are mostly new (a first sync, a big spec apply) or mostly changed
    (a renumbering, every node on a new image) is built afresh beside the old one and swapped in at once: one create
    per file instead of create + rename over the old file (which ext4 makes flush each file's data on its own,
    ~1.5 ms a file on a busy disk), and one syncfs for all. Otherwise only the changed files are replaced."""
    paths, report = run.paths, run.report
    wanted = {
        paths.hosts_dir: {node.name: host_line(node).encode() for node in snapshot if node.mac},
        paths.ipxe_dir: {f"{node.name}.ipxe": render_script(node, settings).encode() for node in snapshot},
    }
    staged: list[tuple[Path, Path]] = []
    touched: set[str] = set()  # file names of changed nodes
    for directory, files in wanted.items():
        existing = _listing(directory)
        is_hosts = directory == paths.hosts_dir
        mostly_new = len(existing) * 2 < len(files)
        changed = None if mostly_new else _changed(directory, files, existing, stop_above=len(files) // 2)
        gone = sorted(existing - files.keys())
        if changed is None:  # mostly new or mostly changed
            staged.append((stage_dir(directory, files), directory))
            report.written += len(files)
            report.removed += len(gone)
            report.removed_nodes = sorted(set(report.removed_nodes) | {name.removesuffix(".ipxe") for name in gone})
            touched |= files.keys()  # not all compared: every node of a rebuilt directory counts as changed
            run.hosts_changed |= is_hosts
            continue
        report.unchanged += len(files) - len(changed)
        for name in sorted(changed):
            write_file(directory / name, files[name], durable=False)
            report.written += 1
        touched |= changed
        run.hosts_changed |= is_hosts and bool(changed)
        for name in gone:
            run.hosts_changed |= run.drop(directory / name, name.removesuffix(".ipxe")) and is_hosts
    report.changed_nodes = sorted(set(report.changed_nodes) | {name.removesuffix(".ipxe") for name in touched})
    if report.written or report.removed:
        sync_dirs(paths.root, *(staging for staging, _ in staged), paths.hosts_dir, paths.ipxe_dir, paths.tftp_dir)
    old = [swap_in(staging, target, keep_old=True) for staging, target in staged]
    _drop_later(paths, [p for p in old if p is not None])


_cleanups: list[threading.Thread] = []
SMALL_TREE = 256  # entries: a replaced tree this small is removed at once


def _drop_later(paths: NetbootPaths, replaced: list[Path]) -> None:
    """Remove replaced trees off the sync's path: the new files are live once swapped in, and unlinking 10,000 old
    files took 40 s on a busy ext4 journal. A big tree is moved out of the netboot directory first (nothing that
    reads it meets a half-removed tree), then removed by a thread; not a daemon thread, so a process that exits waits
    for it. Trees an earlier, killed process left there are removed with it."""
    trash = paths.root.parent / ".netboot-replaced"
    trees: list[Path] = []
    for tree in replaced:
        if len(os.listdir(tree)) <= SMALL_TREE:
            shutil.rmtree(tree)
            continue
        trash.mkdir(mode=0o700, exist_ok=True)
        trees.append(tree.rename(trash / tree.name))
    if not trees:
        return
    # Two threads on one tree (this one and an earlier one still running) do no harm: each ignores what is gone.
    trees = sorted(set(trash.iterdir()))

    def remove() -> None:
        for tree in trees:
            shutil.rmtree(tree, ignore_errors=True)

    thread = threading.Thread(target=remove, name="netboot-cleanup")
    thread.start()
    _cleanups.append(thread)


def wait_for_cleanup() -> None:
    """Wait until the trees replaced by earlier syncs of this process are removed."""
    while _cleanups:
        _cleanups.pop().join()


def netboot_sync(
    db: Database,
    state_dir: Path,
    *,
    nodes: Collection[str] | None = None,
    interface: str | None = None,
    reload: bool = True,
) -> SyncReport:
    """Regenerate ``STATE/netboot`` from the database (all nodes, or only ``nodes``) and reload dnsmasq."""
    started = time.monotonic()
    paths = NetbootPaths.under(state_dir)
    with db.session() as session:
        settings = read_settings(session, interface=interface)
        snapshot = read_nodes(session, nodes)
    report = SyncReport(nodes=len(snapshot))
    with sync_lock(paths):
        run = _Pass(paths, durable=nodes is not None, report=report)
        _common_files(run, settings)
        if nodes is None:
            _full_pass(run, snapshot, settings)
        else:
            found = {node.name for node in snapshot}
            for node in snapshot:
                _node_files(run, node, settings, None)
            # Names asked for but gone from the database: their node was deleted.
            for name in sorted(set(nodes) - found):
                run.hosts_changed |= run.drop(paths.host_file(name), name)
                run.drop(paths.ipxe_file(name), name)
        if reload:
            pid = dhcp_server.running_pid(paths)
            if pid is not None:
                report.restart_needed = report.main_changed
                if run.hosts_changed:
                    report.reloaded_pid = dhcp_server.reload(paths)
    report.seconds = time.monotonic() - started
    return report
