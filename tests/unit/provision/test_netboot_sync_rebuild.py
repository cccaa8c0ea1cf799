"""A full ``netboot sync`` over an existing tree whose files mostly changed rebuilds the directory beside the old
one and swaps it in; the old tree is removed after the sync returns, off its path. A few changed files are still
replaced one by one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from haoscar.db.models import Image, Node
from haoscar.db.session import open_database
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_sync import netboot_sync, wait_for_cleanup
from haoscar.scenarios.bench.netboot_sync import PRIVATE, renumber_and_reimage, seed_cluster

COUNT = 300  # more than SMALL_TREE entries: the replaced trees are removed in the background


def inodes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in directory.iterdir()}


def test_renumbering_every_node_rebuilds_both_directories_and_drops_the_old_ones(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        seed_cluster(db, COUNT)
        netboot_sync(db, tmp_path, reload=False)
        paths = NetbootPaths.under(tmp_path)
        hosts_dir_inode = paths.hosts_dir.stat().st_ino
        renumber_and_reimage(db, COUNT)
        report = netboot_sync(db, tmp_path, reload=False)
        wait_for_cleanup()
    finally:
        db.close()
    # Every file of a rebuilt directory is written, head1's unchanged script too; dnsmasq.conf and entry.ipxe stay.
    assert report.written == 2 * COUNT + 1 and report.unchanged == 2
    assert len(report.changed_nodes) == COUNT + 1  # a rebuilt directory counts every node as changed, head1 too
    assert paths.hosts_dir.stat().st_ino != hosts_dir_inode  # a new directory, swapped in whole
    assert (
        paths.host_file("node001").read_text() == f"52:54:00:00:00:00,{PRIVATE.network_address + 16 + COUNT},node001\n"
    )
    assert "haoscar.image=newimage" in paths.ipxe_file("node001").read_text()
    assert sorted(p.name for p in paths.hosts_dir.iterdir()) == [f"node{i:03d}" for i in range(1, COUNT + 1)]
    assert [p.name for p in paths.root.iterdir() if p.name.startswith(".") and p.is_dir()] == []  # no old tree
    assert list((tmp_path / ".netboot-replaced").iterdir()) == []  # moved out of netboot/, then removed


def test_a_few_changed_nodes_are_replaced_in_place(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        seed_cluster(db, COUNT)
        netboot_sync(db, tmp_path, reload=False)
        paths = NetbootPaths.under(tmp_path)
        before = inodes(paths.ipxe_dir)
        with db.session() as session:
            image = Image(name="other")
            session.add(image)
            session.flush()
            session.execute(update(Node).where(Node.name.in_(["node003", "node007"])).values(image_id=image.id))
        report = netboot_sync(db, tmp_path, reload=False)
    finally:
        db.close()
    after = inodes(paths.ipxe_dir)
    assert report.written == 2 and report.changed_nodes == ["node003", "node007"]
    assert sorted(name for name in after if after[name] != before[name]) == ["node003.ipxe", "node007.ipxe"]
