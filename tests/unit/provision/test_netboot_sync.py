"""``netboot sync`` on a real database: idempotent, incremental, atomic, and the CLI around it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from haoscar.cli.main import app
from haoscar.commands.apply import apply_spec
from haoscar.commands.nodes import delete_nodes, set_nodes
from haoscar.db.session import DB_FILE, Database, open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_macs
from haoscar.provision.netboot_sync import netboot_sync


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cluster applied once per module; each test copies the database file."""
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", "52:54:00:aa:00:01", "test"), ("node02", "52:54:00:aa:00:02", "test")])
    db.close()
    return state / DB_FILE


@pytest.fixture
def state(tmp_path: Path, template: Path) -> Path:
    shutil.copy(template, tmp_path / DB_FILE)
    return tmp_path


@pytest.fixture
def db(state: Path) -> Iterator[Database]:
    database = open_database(state)
    yield database
    database.close()


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` with its inode: a rewritten file gets a new inode (temp file + rename)."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_full_sync_writes_config_host_entries_and_scripts(db: Database, state: Path) -> None:
    report = netboot_sync(db, state)
    paths = NetbootPaths.under(state)
    assert report.nodes == 4 and not report.reloaded_pid
    assert sorted(p.name for p in paths.hosts_dir.iterdir()) == ["node01", "node02"]  # only nodes with a MAC
    assert paths.host_file("node01").read_text() == "52:54:00:aa:00:01,198.18.0.101,node01\n"
    assert sorted(p.name for p in paths.ipxe_dir.iterdir()) == [
        "head1.ipxe",
        "head2.ipxe",
        "node01.ipxe",
        "node02.ipxe",
    ]
    assert (paths.tftp_dir / "undionly.kpxe").read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    assert (paths.tftp_dir / "ipxe.efi").stat().st_size > 0
    assert f"dhcp-hostsdir={paths.hosts_dir}" in paths.conf.read_text()
    assert not [p for p in paths.root.rglob(".*.tmp")]  # no temp file left behind


def test_second_sync_rewrites_nothing(db: Database, state: Path) -> None:
    netboot_sync(db, state)
    before = snapshot(state / "netboot")
    report = netboot_sync(db, state)
    assert report.written == 0 and report.removed == 0
    assert snapshot(state / "netboot") == before


def changed_files(before: dict[str, tuple[int, bytes]], after: dict[str, tuple[int, bytes]]) -> list[str]:
    return sorted(name for name in after.keys() | before.keys() if after.get(name) != before.get(name))


def test_one_node_change_rewrites_only_that_nodes_files(db: Database, state: Path) -> None:
    netboot_sync(db, state)
    before = snapshot(state / "netboot")
    set_nodes(db, "node02", boot_mode="localboot")
    report = netboot_sync(db, state, nodes={"node02"})
    after = snapshot(state / "netboot")
    assert changed_files(before, after) == ["ipxe/node02.ipxe"]  # the DHCP entry does not depend on the boot mode
    assert report.changed_nodes == ["node02"] and report.nodes == 1
    assert after["ipxe/node02.ipxe"][1].decode().splitlines()[-1] == "exit"
    set_nodes(db, "node02", ip="198.18.0.152")
    netboot_sync(db, state, nodes={"node02"})
    again = snapshot(state / "netboot")
    assert changed_files(after, again) == ["hosts.d/node02"]
    assert again["hosts.d/node02"][1] == b"52:54:00:aa:00:02,198.18.0.152,node02\n"


def test_deleted_nodes_lose_their_files_in_both_paths(db: Database, state: Path) -> None:
    netboot_sync(db, state)
    paths = NetbootPaths.under(state)
    delete_nodes(db, "node01")
    report = netboot_sync(db, state, nodes={"node01"})
    assert report.removed_nodes == ["node01"]
    assert not paths.host_file("node01").exists() and not paths.ipxe_file("node01").exists()
    delete_nodes(db, "node02")
    report = netboot_sync(db, state)
    assert report.removed_nodes == ["node02"]
    assert list(paths.hosts_dir.iterdir()) == []


def test_hand_damaged_file_is_repaired_by_a_full_sync(db: Database, state: Path) -> None:
    netboot_sync(db, state)
    paths = NetbootPaths.under(state)
    paths.host_file("node01").write_text("52:54:00:aa:00:01,set:netb")  # e.g. a crash of another tool
    report = netboot_sync(db, state)
    assert report.changed_nodes == ["node01"]
    assert paths.host_file("node01").read_text().endswith(",198.18.0.101,node01\n")


runner = CliRunner()


def test_cli_netboot_disable_and_enable_switch_the_boot_file(state: Path) -> None:
    assert runner.invoke(app, ["--state-dir", str(state), "netboot", "sync", "--json"]).exit_code == 0
    host = NetbootPaths.under(state).host_file("node01")
    result = runner.invoke(app, ["--state-dir", str(state), "netboot", "disable", "node01"])
    assert result.exit_code == 0, result.output
    assert host.read_text() == "52:54:00:aa:00:01,198.18.0.101,node01\n"  # still its address
    assert NetbootPaths.under(state).ipxe_file("node01").read_text().splitlines()[-1] == "exit"
    result = runner.invoke(app, ["--state-dir", str(state), "netboot", "enable", "node[01-02]"])
    assert result.exit_code == 0, result.output
    assert "kernel " in NetbootPaths.under(state).ipxe_file("node01").read_text()


def test_cli_unknown_node_is_a_user_error_and_changes_nothing(state: Path) -> None:
    runner.invoke(app, ["--state-dir", str(state), "netboot", "sync"])
    before = snapshot(state / "netboot")
    result = runner.invoke(app, ["--state-dir", str(state), "netboot", "disable", "node99"])
    assert result.exit_code != 0 and "node99" in str(result.exception)
    assert snapshot(state / "netboot") == before


def test_quarantine_setting_is_checked_and_rendered(db: Database, state: Path) -> None:
    from haoscar.errors import UserError
    from haoscar.provision.netboot_snapshot import save_settings

    with pytest.raises(UserError, match="not inside the private subnet"):
        save_settings(db, quarantine="198.19.0.10-198.19.0.20")
    with pytest.raises(UserError, match="node01"):
        save_settings(db, quarantine="198.18.0.100-198.18.0.110")
    save_settings(db, quarantine="198.18.0.200-198.18.0.240")
    report = netboot_sync(db, state)
    assert report.main_changed
    assert "dhcp-range=198.18.0.200,198.18.0.240,255.255.255.0,10m" in NetbootPaths.under(state).conf.read_text()
