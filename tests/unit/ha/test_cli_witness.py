"""The CLI of the HA core, and the witness's packet handling (no root, no network)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.ha.lease import LeaseTable
from haoscar.ha.wire import KIND_HEARTBEAT, KIND_LEASE_REQUEST, decode, encode
from haoscar.ha.witness import Witness
from haoscar.spec import check_text

KEY = b"w" * 32


def _witness() -> Witness:
    return Witness(name="witness", key=KEY, heads=frozenset({"head1", "head2"}), table=LeaseTable(0.8, started=0.0))


def _request(node: str, seq: int, op: str = "acquire", key: bytes = KEY) -> bytes:
    return encode(KIND_LEASE_REQUEST, {"node": node, "inc": 1, "seq": seq, "op": op}, key)


def test_the_witness_answers_grants_and_denials() -> None:
    witness = _witness()
    reply = witness.handle(_request("head1", 1), now=1.0)
    assert reply is not None
    body = decode(reply, KEY).body
    assert (body["to"], body["nonce"], body["granted"], body["holder"]) == ("head1", 1, True, "head1")
    denied = witness.handle(_request("head2", 1), now=1.1)
    assert denied is not None and decode(denied, KEY).body["granted"] is False


def test_the_witness_drops_forged_replayed_and_foreign_requests() -> None:
    witness = _witness()
    assert witness.handle(_request("head1", 1), now=1.0) is not None
    assert witness.handle(_request("head1", 1), now=1.1) is None  # the same request again (or via another address)
    assert witness.handle(_request("head2", 1, key=b"x" * 32), now=1.2) is None
    assert witness.handle(_request("mallory", 1), now=1.3) is None
    assert witness.handle(encode(KIND_HEARTBEAT, {"node": "head1", "inc": 1, "seq": 9}, KEY), now=1.4) is None
    assert witness.handle(b"\xff" * 3, now=1.5) is None
    counts = witness.drops.as_dict()
    assert (counts["replay"], counts["bad_mac"], counts["unknown_sender"], counts["wrong_kind"]) == (1, 1, 1, 1)
    assert counts["truncated"] == 1
    assert witness.table.holder == "head1"  # nothing of that changed the lease


def test_keygen_writes_a_0600_key_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ha.key"
    with pytest.raises(SystemExit) as done:
        run(["ha", "keygen", "--out", str(out)])
    assert done.value.code in (0, None)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with pytest.raises(SystemExit) as again:
        run(["ha", "keygen", "--out", str(out)])
    assert again.value.code == 2
    assert "--force" in capsys.readouterr().err


def test_status_without_a_daemon_says_how_to_start_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run(["--state-dir", str(tmp_path), "ha", "status"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "no HA daemon" in err and "haoscar ha run" in err and "Traceback" not in err


def test_an_unknown_node_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = Path(__file__).parents[3] / "src/haoscar/data/lab.yaml"
    with pytest.raises(SystemExit) as done:
        run(["--state-dir", str(tmp_path), "ha", "run", "--node", "head9", "--spec", str(spec)])
    assert done.value.code == 2
    assert "head1 (primary) or head2 (standby)" in capsys.readouterr().err


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    text = (Path(__file__).parents[3] / "src/haoscar/data/lab.yaml").read_text()
    text = text.replace("  dead_time: 0.6\n", "  dead_time: 0.6\n  lease_s: 0.3\n")
    _, problems = check_text(text)
    assert any(p.path == "ha.lease_s" and "at least 0.4 s" in p.message for p in problems)


def _marking(node: str, seq: int, stale: bool, op: str = "acquire", force: bool = False) -> bytes:
    body = {"node": node, "inc": 1, "seq": seq, "op": op, "peer_stale": stale, "stale_reason": "standby missed txn 3"}
    if force:
        body["force"] = True
    return encode(KIND_LEASE_REQUEST, body, KEY)


def test_the_witness_keeps_the_active_heads_stale_mark_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "witness" / "stale.json"
    witness = Witness("witness", KEY, frozenset({"head1", "head2"}), LeaseTable(0.8, started=0.0), state_file=state)
    reply = witness.handle(_marking("head1", 1, stale=True), now=1.0)
    assert reply is not None and decode(reply, KEY).body["peer_marked"] is True
    # A forged mark from the standby itself is not accepted (it does not hold the lease).
    forged = witness.handle(_marking("head2", 1, stale=False), now=1.1)
    assert forged is not None and "peer_marked" not in decode(forged, KEY).body

    # The witness restarts (head1 has crashed meanwhile): it still refuses head2, and says why.
    again = Witness("witness", KEY, frozenset({"head1", "head2"}), LeaseTable(0.8, started=5.0), state_file=state)
    refused = again.handle(_request("head2", 2), now=6.0)
    assert refused is not None
    body = decode(refused, KEY).body
    assert body["granted"] is False and body["stale"] == "standby missed txn 3"
    forced = again.handle(_marking("head2", 3, stale=False, force=True), now=6.1)
    assert forced is not None and decode(forced, KEY).body["granted"] is True
    assert "head2" not in again.table.stale and "head2" not in state.read_text()


def test_an_unreadable_mark_file_is_reported_and_ignored(tmp_path: Path) -> None:
    state = tmp_path / "stale.json"
    state.write_text("{not json")
    log = tmp_path / "log"
    with open(log, "w") as out:
        witness = Witness(
            "witness", KEY, frozenset({"head1", "head2"}), LeaseTable(0.8, 0.0), log=out, state_file=state
        )
    assert witness.table.stale == {}
    assert "unreadable" in log.read_text()
