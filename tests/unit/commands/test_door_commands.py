"""The install, HA and replication commands through ``Env``: bad requests name the field, reports carry what the
CLI renders (no daemon, no network)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.commands import ha, install, replication
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.db.session import DB_FILE, open_database
from haoscar.errors import UserError
from haoscar.lab.defaults import default_spec
from haoscar.provision.install_progress import record_progress
from haoscar.provision.netboot_macs import assign_macs

MAC = "52:54:00:aa:00:01"


class FixedClock:
    def __init__(self, wall: float, monotonic: float = 100.0) -> None:
        self._wall, self._mono = wall, monotonic

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", MAC, "test")])
    db.close()
    return state / DB_FILE


@pytest.fixture
def env(tmp_path: Path, template: Path) -> Iterator[Env]:
    shutil.copy(template, tmp_path / DB_FILE)
    with Env(tmp_path, clock=FixedClock(wall=1000.0, monotonic=100.0)) as environment:
        yield environment


def test_install_snapshot_reports_live_numbers_of_installing_nodes(env: Env) -> None:
    record_progress(env.database, env.state_dir, MAC, "image", 40, nbytes=4_000_000, now=95.0)
    report = install.monitor(env, install.MonitorInstalls(nodeset="node[01-02]"))
    assert report.installing == 1
    row = report.as_dict()["nodes"][0]
    assert (row["node"], row["install_state"], row["stage"], row["percent"], row["elapsed_s"]) == (
        "node01",
        "installing",
        "image",
        40,
        5.0,
    )


def test_install_monitor_and_settings_name_their_fields(env: Env) -> None:
    with pytest.raises(UserError, match="interval:"):
        install.monitor(env, install.MonitorInstalls(follow=True, interval=0))
    with pytest.raises(UserError, match="stall timeout 0 s is out of range"):
        install.configure(env, install.InstallSettings(stall_timeout=0))
    assert install.configure(env, install.InstallSettings(stall_timeout=30)).stall_timeout == 30


def test_install_token_lifetime_is_a_setting_and_a_bad_one_changes_nothing(env: Env) -> None:
    assert install.configure(env, install.InstallSettings(token_ttl=900)).token_ttl == 900
    with pytest.raises(UserError, match="token_ttl: 5 s is out of range"):
        install.configure(env, install.InstallSettings(stall_timeout=45, token_ttl=5))
    with pytest.raises(UserError, match="name at least one setting"):
        install.configure(env, install.InstallSettings())
    kept = install.configure(env, install.InstallSettings(stall_timeout=30))
    assert (kept.stall_timeout, kept.token_ttl) == (30, 900)


@pytest.mark.parametrize(
    ("request_", "field"),
    [(ha.HaAction(op="reboot"), "op:"), (ha.HaAction(op="switchover", force=True), "force:")],
)
def test_ha_actions_are_checked_before_the_daemon_is_asked(env: Env, request_: ha.HaAction, field: str) -> None:
    # No daemon runs here: a request that reached the socket would fail with "no HA daemon" instead.
    with pytest.raises(UserError, match=field):
        ha.act(env, request_)


def test_replication_status_reports_its_age_from_the_clock(env: Env) -> None:
    with pytest.raises(UserError, match="no replication status under"):
        replication.status(env)
    repl_dir = env.state_dir / "replication"
    repl_dir.mkdir()
    status = {"node": "head2", "role": "target", "peer": "head1", "lag_s": 0.0, "files_pending": 0,
              "bytes_pending": 0, "last_full_pass": None, "last_error": None, "standby_stale": True,
              "stale_reason": "disk full", "db_lsn": 7, "db_connected": True, "updated": 990.0}  # fmt: skip
    (repl_dir / "status.json").write_text(json.dumps(status))
    report = replication.status(env).as_dict()
    assert (report["standby_stale"], report["db_lsn"], report["status_age_s"]) == (True, 7, 10.0)


def test_replication_run_checks_role_and_catch_up_first(env: Env, tmp_path: Path) -> None:
    spec = tmp_path / "missing.yaml"
    with pytest.raises(UserError, match="role: 'source ' is not a role"):
        replication.run(env, replication.RunReplication(node="head1", spec_file=spec, role="source "))
    with pytest.raises(UserError, match="catch_up:"):
        replication.run(env, replication.RunReplication(node="head1", spec_file=spec, role="source", catch_up=True))
    assert replication.may_take_over(env, replication.TakeOverCheck()).allowed
