"""A crash of the active head under load, the standby taking over, and the former active head coming back."""

from __future__ import annotations

import time

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.bench.replication import crash_run
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import ReplLab, db_messages, repl_spec

pytestmark = pytest.mark.lab


def test_crash_loses_nothing_acknowledged_and_the_old_primary_catches_up(make_lab: MakeLab) -> None:
    rl = ReplLab(make_lab(), repl_spec(default_spec()))
    rl.setup()
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)

        # 50 files/s and 40 database changes for 4 s; head1 crashes after 2 s.
        crash = crash_run(rl, seconds=4.0, rate=50.0, db_changes=40)
        assert crash["errors"] == []
        assert crash["files_acked_beyond_bound"] >= 25
        assert crash["files_lost"] == 0, crash
        assert crash["db_changes_acked_before_crash"] >= 10
        assert crash["db_changes_lost"] == 0, crash

        # head2 takes over and the cluster goes on changing there.
        rl.stop(rl.standby)
        rl.start(rl.standby, "source")
        (rl.path(rl.standby, "/home/after")).write_text("written on head2 after the takeover\n")
        db = open_database(rl.state_dir(rl.standby))
        with db.session() as session:
            record_event(session, "test", "after-takeover")
        db.close()

        # head1 boots again with something only it has (written before the crash, never replicated).
        rl.lab.restore(rl.primary)
        rl.path(rl.primary, "/home/only-head1.txt").write_text("mine alone\n")
        rl.start(rl.primary, "target", catch_up=True)
        rl.wait_for(rl.primary, 60, role="target", standby_stale=False)
        rl.wait_for(rl.standby, 30, role="source", standby_stale=False)

        home1 = rl.path(rl.primary, "/home")
        assert (home1 / "after").read_text() == "written on head2 after the takeover\n"
        assert not (home1 / "only-head1.txt").exists()
        kept = list((rl.state_dir(rl.primary) / "replication" / "divergent").glob("*/files/home/only-head1.txt"))
        assert len(kept) == 1 and kept[0].read_text() == "mine alone\n"
        assert list((rl.state_dir(rl.primary) / "replication" / "divergent").glob("*/db/haoscar.db"))
        assert "after-takeover" in db_messages(rl.state_dir(rl.primary), "after-")
        assert any(e["kind"] == "replication.divergent" for e in rl.events(rl.primary))

        # And replication now flows from head2 to head1.
        (rl.path(rl.standby, "/home/later")).write_text("later\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (home1 / "later").exists():
            time.sleep(0.05)
        assert (home1 / "later").read_text() == "later\n"
    finally:
        rl.stop_all()
