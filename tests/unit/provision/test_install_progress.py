"""The head node's record of installations: stages, rate, completion (localboot), failures and stalls."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.models import Event, Node
from haoscar.db.session import Database, open_database
from haoscar.errors import NotFound, UserError
from haoscar.lab.defaults import default_spec
from haoscar.provision import install_progress as ip
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_macs
from haoscar.provision.netboot_sync import netboot_sync

MAC = "52:54:00:aa:00:01"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", MAC, "test")])
    netboot_sync(db, state, reload=False)
    db.close()
    return state


@pytest.fixture
def env(tmp_path: Path, template: Path) -> tuple[Database, Path]:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return open_database(tmp_path), tmp_path


def node(db: Database, name: str = "node01") -> tuple[str, str, str]:
    with db.session() as session:
        row = session.query(Node).filter_by(name=name).one()
        return row.install_state, row.install_detail, row.boot_mode


def test_progress_moves_the_node_through_its_stages_with_a_rate(env: tuple[Database, Path]) -> None:
    db, state = env
    ip.record_progress(db, state, MAC, "node", 1, now=100.0)
    assert node(db) == ("installing", "node", "netboot")
    ip.record_progress(db, state, MAC, "image", 10, nbytes=0, now=110.0)
    live = ip.record_progress(db, state, MAC, "image", 50, nbytes=40_000_000, now=112.0)
    assert live.rate == pytest.approx(20e6)
    assert live.as_dict(115.0)["elapsed_s"] == 15.0
    assert node(db) == ("installing", "image", "netboot")
    assert [r.node for r in ip.monitor_rows(db, state)] == ["node01"]


def test_done_switches_the_node_to_localboot_and_rewrites_its_ipxe_script(env: tuple[Database, Path]) -> None:
    db, state = env
    ip.record_progress(db, state, MAC, "node", 1, now=100.0)
    assert ip.record_done(db, state, MAC.upper(), 42, now=142.0) == "node01"
    assert node(db) == ("installed", "", "localboot")
    script = NetbootPaths.under(state).ipxe_file("node01").read_text()
    assert script.strip().endswith("exit") and "kernel" not in script
    done = ip.read_one(state, "node01")
    assert done is not None and (done.state, done.stage, done.percent) == ("installed", "done", 100)
    with db.session() as session:
        assert session.query(Event).filter_by(kind="install-done", node="node01").count() == 1


def test_failure_is_recorded_with_stage_and_reason(env: tuple[Database, Path]) -> None:
    db, state = env
    ip.record_failed(db, state, MAC, "disk", "disk too small:\n /dev/vda has 16 MiB")
    assert node(db) == ("failed", "disk: disk too small: /dev/vda has 16 MiB", "netboot")


def test_a_silent_install_fails_after_the_stall_timeout_and_a_new_one_starts_over(env: tuple[Database, Path]) -> None:
    db, state = env
    ip.set_stall_timeout(db, 5)
    ip.record_progress(db, state, MAC, "node", 1, now=100.0)
    ip.record_progress(db, state, MAC, "image", 30, nbytes=5, now=101.0)
    assert ip.expire_stalled(db, state, now=105.9) == []
    assert ip.expire_stalled(db, state, now=106.0) == ["node01"]
    assert node(db)[:2] == ("failed", "image: no progress for 5 s")
    assert ip.expire_stalled(db, state, now=200.0) == []  # failed once, not again
    again = ip.record_progress(db, state, MAC, "node", 1, now=300.0)
    assert (again.state, again.started_mono) == ("installing", 300.0)
    assert node(db)[0] == "installing"


def test_bad_reports_are_refused(env: tuple[Database, Path]) -> None:
    db, state = env
    with pytest.raises(NotFound, match="no node has MAC 52:54:00:aa:00:99"):
        ip.record_progress(db, state, "52:54:00:aa:00:99", "node", 1)
    with pytest.raises(UserError, match="unknown install stage 'partying'"):
        ip.record_progress(db, state, MAC, "partying", 1)
    with pytest.raises(UserError, match="percent 101 is out of range"):
        ip.record_progress(db, state, MAC, "image", 101)
    with pytest.raises(UserError, match="not a MAC address"):
        ip.record_done(db, state, "nonsense")
    with pytest.raises(UserError, match="out of range"):
        ip.set_stall_timeout(db, 0)
    assert node(db) == ("mac-assigned", "", "netboot")
