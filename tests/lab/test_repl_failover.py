"""A crash of the active head under load, the standby taking over, and the former active head coming back; and,
with the HA daemons, two crashes in a row followed by a restart of both heads (the administrator's cold start)."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.bench.replication import crash_run
from haoscar.scenarios.ha_lab import HOST_STATE_DIR, HaLab, start_ha, wait_until
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


COMMIT = """import sys
from pathlib import Path
from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
db = open_database(Path(sys.argv[1]))
with db.session() as session:
    record_event(session, "test", sys.argv[2])
db.close()
"""


def _commit(ha: HaLab, head: str, message: str) -> None:
    """One acknowledged database change made on ``head`` the way haoscar's commands make them."""
    ha.lab.exec(head, [sys.executable, "-c", COMMIT, HOST_STATE_DIR, message])


def _repl(ha: HaLab, head: str) -> dict[str, Any]:
    return (ha.status(head, timeout=1.0) or {}).get("replication") or {}


def _standby_current(ha: HaLab, active: str, standby: str) -> None:
    """The active head told its standby that its copy is current (after the witness dropped its mark)."""
    ok = wait_until(lambda: bool(_repl(ha, standby).get("confirmed_current")), 90, 0.05)
    assert ok, f"{_repl(ha, active)}\n{_repl(ha, standby)}\n{ha.logs(active)}\n{ha.logs(standby)}"


def _owners(ha: HaLab) -> tuple[list[str], list[str]]:
    """(heads in state active, heads holding the VIP), read now."""
    active, holding = [], []
    for head in (ha.primary, ha.standby):
        status = ha.status(head, timeout=1.0) or {}
        if status.get("state") == "active":
            active.append(head)
        if (status.get("vip") or {}).get("held"):
            holding.append(head)
    return active, holding


def test_two_crashes_then_a_restart_of_both_heads_gives_one_active_head_with_the_newest_data(
    make_lab: MakeLab,
) -> None:
    lab = make_lab()
    spec = default_spec()
    ha = start_ha(lab, spec, replication=True, replication_ack_timeout_s=1.0)
    head1, head2 = ha.primary, ha.standby
    try:
        # First crash: head1 dies right after head2 was told that its copy is current; head2 takes over.
        _standby_current(ha, head1, head2)
        _commit(ha, head1, "gen-1")
        _standby_current(ha, head1, head2)
        lab.crash(head1)
        ha.wait_for(head2, "active", 20)
        _commit(ha, head2, "gen-2")
        # head1 boots, catches up and is head2's standby; second crash: head2 dies, head1 takes over.
        lab.restore(head1)
        ha.start_daemon(head1)
        _standby_current(ha, head2, head1)
        lab.crash(head2)
        ha.wait_for(head1, "active", 20)
        _commit(ha, head1, "gen-3")  # the newest data: on head1 alone (head2 is down)
    finally:
        ha.stop()
    state1, state2 = (lab.host_dir(h) / HOST_STATE_DIR.lstrip("/") for h in (head1, head2))
    assert db_messages(state1, "gen-") == {"gen-1", "gen-2", "gen-3"}
    assert "gen-3" not in db_messages(state2, "gen-")

    # The administrator boots head2 and starts HA on both heads at once.
    lab.restore(head2)
    ha = start_ha(lab, spec, wait=False, replication=True, replication_ack_timeout_s=1.0)
    try:
        seen: list[tuple[list[str], list[str]]] = []

        def settled() -> bool:
            seen.append(_owners(ha))
            return seen[-1] == ([head1], [head1]) and (ha.status(head2, timeout=1.0) or {}).get("state") == "standby"

        assert wait_until(settled, 40, 0.1), f"{seen[-5:]}\n{ha.logs(head1)}\n{ha.logs(head2)}"
        assert all(len(active) <= 1 and len(holding) <= 1 for active, holding in seen), seen
        # head2, whose copy lacks gen-3, catches up from head1 and becomes its current standby.
        _standby_current(ha, head1, head2)
        assert db_messages(state2, "gen-") == {"gen-1", "gen-2", "gen-3"}
        assert _owners(ha) == ([head1], [head1])
    finally:
        ha.stop()
