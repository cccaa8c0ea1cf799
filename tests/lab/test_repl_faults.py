"""Faults: a full disk on the standby, a wrong peer key, a bad replicated path. Each is a clear error and an event,
the active head keeps serving, and a standby whose copy is stale refuses to take over unless forced."""

from __future__ import annotations

import sys
import time

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import HOST_STATE_DIR, ReplLab, db_messages, repl_spec
from haoscar.spec.models import ReplicatedPath

pytestmark = pytest.mark.lab


def commit(rl: ReplLab, message: str) -> float:
    started = time.monotonic()
    db = open_database(rl.state_dir(rl.primary))
    with db.session() as session:
        record_event(session, "test", message)
    db.close()
    return time.monotonic() - started


def haoscar(rl: ReplLab, host: str, *argv: str) -> tuple[int, str]:
    out = rl.lab.exec(host, [sys.executable, "-m", "haoscar", "--state-dir", HOST_STATE_DIR, *argv], check=False)
    return out.returncode, out.stdout + out.stderr


def test_full_disk_wrong_key_and_bad_paths(make_lab: MakeLab) -> None:
    rl = ReplLab(make_lab(), repl_spec(default_spec(), replication_ack_timeout_s=1.0))
    rl.setup()
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        assert haoscar(rl, rl.standby, "repl", "may-take-over")[0] == 0

        # A full disk on the standby: a 256 KiB tmpfs inside its /home (its own mount namespace).
        rl.path(rl.standby, "/home/full").mkdir()
        rl.lab.exec(rl.standby, ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", "/home/full"])
        rl.path(rl.primary, "/home/full").mkdir(exist_ok=True)
        rl.path(rl.primary, "/home/full/big").write_bytes(b"z" * 1_000_000)
        event = rl.wait_event(rl.primary, "replication.failed", problem="disk_full")
        assert "No space left on device" in event["message"]
        rl.wait_until(rl.primary, lambda s: s["standby_stale"] and "disk_full" in (s["last_error"] or ""))
        # The active head keeps serving: a database change commits at once and still reaches the standby.
        assert commit(rl, "during-full-disk") < 3.0
        assert "during-full-disk" in db_messages(rl.state_dir(rl.standby), "during-")

        # The standby was told its copy is stale: it refuses to take over unless forced, and says so.
        rl.wait_for(rl.standby, 10, standby_stale=True)
        code, text = haoscar(rl, rl.standby, "repl", "may-take-over")
        assert code == 1 and "STALE" in text and "--force" in text
        code, text = haoscar(rl, rl.standby, "repl", "may-take-over", "--force")
        assert code == 0 and "FORCED" in text
        code, text = haoscar(rl, rl.standby, "repl", "status", "--json")
        assert code == 0 and '"standby_stale": true' in text

        # A wrong key on the standby: both channels refuse, both heads report it, the active head goes on.
        rl.stop_all()
        rl.setup(keys_differ=True)
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_event(rl.primary, "replication.failed", problem="auth")
        rl.wait_event(rl.standby, "replication.auth_failed")
        assert commit(rl, "with-wrong-key") < 3.0
        assert "with-wrong-key" not in db_messages(rl.state_dir(rl.standby), "with-")
        # The status file is a snapshot rewritten every second (replication's monitor round): it may still hold
        # the first error (the standby's listener not up yet) for up to a second after the event; wait for it.
        status = rl.wait_until(
            rl.primary,
            lambda s: s["standby_stale"] and any(word in (s["last_error"] or "") for word in ("HA key", "auth")),
        )
        assert status["standby_stale"]

        # A replicated path that does not exist on the head: a clear error, exit status 2, nothing started.
        rl.stop_all()
        bad = rl.spec.ha.model_copy(update={"replicate": [ReplicatedPath(path="/home/nothere")]})
        ReplLab(rl.lab, rl.spec.model_copy(update={"ha": bad})).setup()
        code, text = haoscar(rl, rl.primary, "repl", "run", "--node", "head1", "--spec", "/etc/haoscar/cluster.yaml",
                             "--role", "source")  # fmt: skip
        assert code == 2 and "/home/nothere does not exist" in text and "Traceback" not in text
    finally:
        rl.stop_all()
