"""Finding 3 (silent replication loss): a database transaction of tens of MB commits on the active head only once
the standby has it, and after a crash of the active head the standby has all of it."""

from __future__ import annotations

import sqlite3
import time

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import ReplLab, repl_spec

pytestmark = pytest.mark.lab

ROWS = 50_000
ROW_BYTES = 1_000  # 50 MB of rows in one transaction


def test_a_50_mb_transaction_is_on_the_standby_after_a_crash(make_lab: MakeLab) -> None:
    rl = ReplLab(make_lab(), repl_spec(default_spec()))
    rl.setup()
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        before = rl.status(rl.primary)
        assert before is not None

        started = time.monotonic()
        db = open_database(rl.state_dir(rl.primary))
        with db.session() as session:
            for i in range(ROWS):
                record_event(session, "bulk", f"bulk-{i:08d}-" + "x" * (ROW_BYTES - 14))
        db.close()
        took = time.monotonic() - started
        print(f"50 MB transaction committed (replicated) in {took:.1f} s")

        # Acknowledged while in sync: the source still counts the standby in sync, one LSN further.
        after = rl.wait_until(rl.primary, lambda s: s["db_lsn"] == before["db_lsn"] + 1, 10)
        assert not after["standby_stale"] and after["db_connected"]

        rl.lab.crash(rl.primary)
        rl.forget(rl.primary)
        rl.stop(rl.standby)

        conn = sqlite3.connect(f"file:{rl.state_dir(rl.standby) / 'haoscar.db'}?mode=ro", uri=True)
        try:
            count, size = conn.execute(
                "SELECT count(*), sum(length(message)) FROM events WHERE kind = 'bulk'"
            ).fetchone()
        finally:
            conn.close()
        assert (count, size) == (ROWS, ROWS * ROW_BYTES)
    finally:
        rl.stop_all()
