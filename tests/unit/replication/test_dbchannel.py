"""Synchronous database replication on loopback: the real source and target, the real commit seam."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from haoscar.db.session import open_database, record_event
from haoscar.events import Event, EventBus
from haoscar.replication.config import ReplConfig
from haoscar.replication.dbhook import NotReplicated
from haoscar.replication.dbsource import DbSource
from haoscar.replication.dbtarget import DbTarget

KEY = b"k" * 32


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cfg(node: str, peer: str, state_dir: Path, port: int) -> ReplConfig:
    loopback = IPv4Address("127.0.0.1")
    return ReplConfig(
        node=node, peer=peer, local_ip=loopback, peer_ip=loopback, db_port=port, rsync_port=1, trees=(),
        state_dir=state_dir, key_file=state_dir / "ha.key", batch_s=0.05, full_pass_s=600, lag_alert_s=5,
        ack_timeout_s=1.0,
    )  # fmt: skip


def _write(state_dir: Path, message: str) -> float:
    """One acknowledged change, as any haoscar command makes it; returns how long the commit took."""
    started = time.monotonic()
    db = open_database(state_dir)
    with db.session() as session:
        record_event(session, "test", message)
    db.close()
    return time.monotonic() - started


def _messages(path: Path) -> set[str]:
    conn = sqlite3.connect(path / "haoscar.db")
    try:
        return {row[0] for row in conn.execute("SELECT message FROM events")}
    finally:
        conn.close()


async def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("deep", [False, True], ids=["short-path", "state-dir-beyond-sun_path"])
def test_changes_are_on_the_standby_before_the_commit_returns(tmp_path: Path, deep: bool) -> None:
    # A UNIX socket path holds 108 bytes; a deep state dir must work all the same (haoscar.sockpath).
    base = tmp_path / ("d" * 100) if deep else tmp_path
    active, standby = base / "a", base / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    degraded: list[tuple[str, bool]] = []
    told: list[bool] = []
    events: list[Event] = []

    async def scenario() -> None:
        bus = EventBus("test")
        bus.subscribe(events.append)
        target = DbTarget(_cfg("b", "a", standby, port), KEY, bus, lambda stale, _why: told.append(stale))
        await target.start()
        source = DbSource(_cfg("a", "b", active, port), KEY, bus, lambda why, auth: degraded.append((why, auth)))
        await source.start()
        await _until(lambda: source.synced)
        for i in range(5):
            await asyncio.to_thread(_write, active, f"m{i}")
            # Acknowledged means already on the standby's disk: read it there right away.
            assert f"m{i}" in _messages(standby)
        assert source.lsn == 5 and target.lsn == 5

        await source.set_peer_stale(True, "test")
        assert told == [True]

        # The standby goes away: the active head goes on alone within the ack timeout and says so.
        await target.stop()
        took = await asyncio.to_thread(_write, active, "alone")
        assert took < 3.0
        assert "alone" in _messages(active) and "alone" not in _messages(standby)
        assert degraded and not degraded[0][1]  # the standby is declared stale (not an authentication problem)

        # Back again: a full copy brings what it missed, then changes flow synchronously again.
        target = DbTarget(_cfg("b", "a", standby, port), KEY, bus, lambda stale, _why: told.append(stale))
        await target.start()
        await _until(lambda: source.synced)
        assert "alone" in _messages(standby)
        await asyncio.to_thread(_write, active, "after")
        assert "after" in _messages(standby)
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    assert any(e.kind == "replication.full_copy" for e in events)


def test_a_wrong_key_is_refused_and_reported_on_both_sides(tmp_path: Path) -> None:
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    degraded: list[tuple[str, bool]] = []
    events: list[Event] = []

    async def scenario() -> None:
        bus = EventBus("test")
        bus.subscribe(events.append)
        target = DbTarget(_cfg("b", "a", standby, port), b"x" * 32, bus, lambda _s, _w: None)
        await target.start()
        source = DbSource(_cfg("a", "b", active, port), KEY, bus, lambda why, auth: degraded.append((why, auth)))
        await source.start()
        await _until(lambda: bool(degraded))
        # The active head keeps serving: a commit does not wait for a standby it cannot authenticate with.
        assert await asyncio.to_thread(_write, active, "served") < 3.0
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    assert degraded[0][1] is True and "HA key" in degraded[0][0]
    assert any(e.kind == "replication.auth_failed" for e in events)
    assert "served" in _messages(active)


def test_a_change_the_standby_lacks_is_acknowledged_only_once_the_witness_knows(tmp_path: Path) -> None:
    # No standby at all: every change goes on alone. While the witness cannot record that the standby is stale,
    # the writer gets a clear error and the change is not committed; once it can, changes are acknowledged.
    active = tmp_path / "a"
    open_database(active).close()
    witness_answers: list[bool] = []
    asked: list[bool] = []

    async def confirm(_why: str) -> bool:
        answer = witness_answers.pop(0)
        asked.append(answer)
        return answer

    async def scenario() -> None:
        bus = EventBus("test")
        source = DbSource(_cfg("a", "b", active, _port()), KEY, bus, lambda _why, _auth: None, confirm)
        await source.start()
        witness_answers.extend([False, True, True])
        with pytest.raises(NotReplicated) as refused:
            await asyncio.to_thread(_write, active, "refused")
        assert "witness" in str(refused.value) and "not committed" in str(refused.value)
        await asyncio.to_thread(_write, active, "recorded")
        await source.stop()

    asyncio.run(scenario())
    messages = _messages(active)
    assert "refused" not in messages and "recorded" in messages
    assert asked == [False, True]
