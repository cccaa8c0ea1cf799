"""Synchronous database replication on loopback: the real source and target, the real commit seam."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import ssl
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.events import Event, EventBus
from haoscar.replication.config import ReplConfig
from haoscar.replication.dbhook import UNREPLICATED_MARK, NotReplicated
from haoscar.replication.dbsource import DbSource
from haoscar.replication.dbtarget import DbTarget
from haoscar.tlsca import client_context, init_cluster_tls, node_files

KEY = b"k" * 32


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tls(base: Path) -> Path:
    """The cluster CA and both heads' certificates (for 127.0.0.1), as set-up makes them: the channel is TLS."""
    tls = base / "tls"
    if not (tls / "b.key").exists():
        init_cluster_tls(tls, {"a": ["127.0.0.1"], "b": ["127.0.0.1"]})
    return tls


def _cfg(node: str, peer: str, state_dir: Path, port: int, ack_timeout_s: float = 1.0) -> ReplConfig:
    loopback = IPv4Address("127.0.0.1")
    return ReplConfig(
        node=node, peer=peer, local_ip=loopback, peer_ip=loopback, db_port=port, rsync_port=1, trees=(),
        state_dir=state_dir, key_file=state_dir / "ha.key", batch_s=0.05, full_pass_s=600, lag_alert_s=5,
        ack_timeout_s=ack_timeout_s, tls_dir=_tls(state_dir.parent),
    )  # fmt: skip


def _write(state_dir: Path, message: str) -> float:
    """One acknowledged change, as any haoscar command makes it; returns how long the commit took.

    Only the commit is timed (where a wait for the standby's acknowledgement would be): opening the database
    (SQLAlchemy, the schema check) is local work whose time on a loaded 2-core machine says nothing about it.
    """
    db = open_database(state_dir)
    try:
        started = time.monotonic()
        with db.session() as session:
            record_event(session, "test", message)
        return time.monotonic() - started
    finally:
        db.close()


def _unreplicated_mark(state_dir: Path) -> str:
    """What a writer recorded when it could not reach the replication daemon at all (dbhook's mark), if anything."""
    marks = list(state_dir.rglob(UNREPLICATED_MARK))
    return "; ".join(m.read_text().strip() for m in marks) or "no unreplicated mark"


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
        # the standby is declared stale (not an authentication problem); if not, the writer's mark says why
        assert degraded and not degraded[0][1], _unreplicated_mark(active)

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


def _start_pair(
    active: Path, standby: Path, port: int, bus: EventBus, ack_timeout_s: float = 1.0
) -> tuple[DbTarget, DbSource]:
    target = DbTarget(_cfg("b", "a", standby, port, ack_timeout_s), KEY, bus, lambda _s, _w: None)
    source = DbSource(_cfg("a", "b", active, port, ack_timeout_s), KEY, bus, lambda _why, _auth: None)
    return target, source


def _bulk(state_dir: Path, rows: int, size: int, last: str | None = None) -> None:
    """One transaction of ``rows`` events of ``size`` bytes each (and ``last``)."""
    db = open_database(state_dir)
    with db.session() as session:
        for i in range(rows):
            record_event(session, "bulk", f"{i:08d}" + "x" * size)
        if last is not None:
            record_event(session, "bulk", last)
    db.close()


def test_a_transaction_of_tens_of_megabytes_is_on_the_standby_before_the_commit_returns(tmp_path: Path) -> None:
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()

    async def scenario() -> None:
        # What is tested is the size, not the speed: with the 1 s acknowledgement timeout a standby slowed down by
        # a loaded machine applies 20 MB too late, and the active head rightly goes on without it (lsn 0).
        target, source = _start_pair(active, standby, port, EventBus("test"), ack_timeout_s=60.0)
        await target.start()
        await source.start()
        await _until(lambda: source.synced)
        await asyncio.to_thread(_bulk, active, 20_000, 1_000)  # 20 MB of rows in one transaction
        assert source.lsn == 1 and source.synced and target.lsn == 1
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    conn = sqlite3.connect(standby / "haoscar.db")
    count, total = conn.execute("SELECT count(*), sum(length(message)) FROM events WHERE kind = 'bulk'").fetchone()
    assert (count, total) == (20_000, 20_000 * 1_008)


def test_a_replayed_hello_does_not_reset_the_live_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from haoscar.replication import dbtarget
    from haoscar.replication.config import derived_secret
    from haoscar.replication.dbwire import pack

    monkeypatch.setattr(dbtarget, "HANDSHAKE_TIMEOUT", 1.0)
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    events: list[Event] = []
    # What an eavesdropper recorded of an earlier session: a hello signed with the real key.
    recorded = pack(derived_secret(KEY, "db"), b"hello", {"op": "hello", "node": "a", "nonce": "ab" * 16})

    async def scenario() -> None:
        bus = EventBus("test")
        bus.subscribe(events.append)
        target, source = _start_pair(active, standby, port, bus)
        await target.start()
        await source.start()
        await _until(lambda: source.synced)
        live = target.current
        # Sent by someone who also holds a cluster certificate (a recording cannot be replayed into TLS): the HMAC
        # session inside still keeps the live session.
        tls = client_context(tmp_path / "tls" / "ca.crt", node_files(tmp_path / "tls", "a"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1")
        writer.write(recorded)
        await writer.drain()
        # The standby answers (it cannot tell a recording from the source) but never takes it as the session.
        assert await asyncio.wait_for(reader.read(), 10.0) != b""  # the welcome, then the close
        assert target.current is live
        await asyncio.to_thread(_write, active, "after the replay")
        assert "after the replay" in _messages(standby) and source.lsn == 1
        assert not any(e.kind == "replication.disconnected" for e in events)
        writer.close()
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    assert any(e.kind == "replication.auth_failed" and "replayed" in e.message for e in events)


def test_unauthenticated_connections_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from haoscar.replication import dbtarget

    monkeypatch.setattr(dbtarget, "HANDSHAKE_TIMEOUT", 60.0)  # only the cap can close the extra connection
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()

    async def scenario() -> None:
        target, source = _start_pair(active, standby, port, EventBus("test"))
        await target.start()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(dbtarget.MAX_PREAUTH)]
        await _until(lambda: target._preauth == dbtarget.MAX_PREAUTH)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10.0) == b""  # closed at once, without a word
        writer.close()
        for _r, w in idle:
            w.close()
        await _until(lambda: target._preauth == 0)
        await source.start()  # the source itself still gets in
        await _until(lambda: source.synced)
        await source.stop()
        await target.stop()

    asyncio.run(scenario())


def test_a_silent_connection_is_closed_before_authentication(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from haoscar.replication import dbtarget

    monkeypatch.setattr(dbtarget, "HANDSHAKE_TIMEOUT", 0.5)
    standby = tmp_path / "b"
    standby.mkdir()
    port = _port()

    async def scenario() -> None:
        target = DbTarget(_cfg("b", "a", standby, port), KEY, EventBus("test"), lambda _s, _w: None)
        await target.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10.0) == b""
        writer.close()
        await target.stop()

    asyncio.run(scenario())


def test_a_row_too_large_for_a_frame_reaches_the_standby_by_a_full_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haoscar.replication import dbhook

    monkeypatch.setattr(dbhook, "MAX_ROW_BYTES", 10_000)
    monkeypatch.setattr(dbhook.request_lines, "__defaults__", (5_000,))  # parts of 5 kB
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    degraded: list[str] = []

    async def scenario() -> None:
        bus = EventBus("test")
        target = DbTarget(_cfg("b", "a", standby, port), KEY, bus, lambda _s, _w: None)
        source = DbSource(_cfg("a", "b", active, port), KEY, bus, lambda why, _auth: degraded.append(why))
        await target.start()
        await source.start()
        await _until(lambda: source.synced)
        # One transaction: parts of small rows already shipped, then a row too large for a part.
        await asyncio.to_thread(_bulk, active, 3, 4_000, "big " + "y" * 20_000)
        await _until(lambda: source.synced)
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    assert degraded and "a row of" in degraded[0]
    assert any(m.startswith("big ") for m in _messages(standby))
    assert len([m for m in _messages(standby) if m.startswith("0000000")]) == 3


def test_the_line_socket_client_streams_a_request_and_reads_one_reply(tmp_path: Path) -> None:
    from haoscar import linesock

    path = tmp_path / "s.sock"
    got: list[bytes] = []

    async def scenario() -> dict[str, object]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (line := await reader.readline()) and b'"last"' not in line:
                got.append(line)
            writer.write(b'{"ok": true}\n')
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(serve, str(path))
        lines = [b'{"n": 1}\n', b'{"n": 2}\n', b'{"last": 1}\n']
        reply = await asyncio.to_thread(linesock.ask, str(path), iter(lines), 5.0)
        server.close()
        return reply

    assert asyncio.run(scenario()) == {"ok": True}
    assert got == [b'{"n": 1}\n', b'{"n": 2}\n']
    with pytest.raises(linesock.NoServer):
        linesock.ask(str(tmp_path / "none.sock"), {"op": "x"}, 1.0)


def test_an_oversized_frame_is_refused_before_its_body_is_read() -> None:
    from haoscar.replication.dbwire import HEADER, MAX_HELLO, ChannelError, read_frame

    async def scenario(json_len: int, blob_len: int, max_json: int, max_blob: int) -> str:
        reader = asyncio.StreamReader()
        reader.feed_data(HEADER.pack(json_len, blob_len) + b"{}")  # no body follows: nothing more is awaited
        with pytest.raises(ChannelError) as refused:
            await asyncio.wait_for(read_frame(reader, KEY, b"p", max_json, max_blob), 5.0)
        assert refused.value.auth
        return str(refused.value)

    # 4 GiB announced by someone without the key, and a hello far above its own limit
    assert "too large" in asyncio.run(scenario(2, 4 * 1024**3 - 1, 8 << 20, 8 << 20))
    assert "too large" in asyncio.run(scenario(MAX_HELLO + 1, 0, MAX_HELLO, 0))


def test_heads_at_different_schema_revisions_refuse_to_replicate_and_say_why(tmp_path: Path) -> None:
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    degraded: list[tuple[str, bool]] = []

    async def scenario() -> None:
        bus = EventBus("test")
        target = DbTarget(_cfg("b", "a", standby, port), KEY, bus, lambda _s, _w: None)
        await target.start()
        target.revision = "9999_from_a_newer_haoscar"  # as if the standby ran another version
        source = DbSource(_cfg("a", "b", active, port), KEY, bus, lambda why, auth: degraded.append((why, auth)))
        await source.start()
        await _until(lambda: bool(degraded))
        assert not source.synced
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    why, _auth = degraded[0]
    assert "schema revision 9999_from_a_newer_haoscar" in why and "same haoscar version" in why


def test_sql_sent_over_an_authenticated_channel_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    # Even a sender holding the key (a compromised peer) gets rows applied, never statements executed.
    active, standby = tmp_path / "a", tmp_path / "b"
    open_database(active).close()
    standby.mkdir()
    port = _port()
    evil = tmp_path / "written-by-attach.db"
    events: list[Event] = []
    replies: list[dict[str, object]] = []

    async def scenario() -> None:
        bus = EventBus("test")
        bus.subscribe(events.append)
        target, source = _start_pair(active, standby, port, bus)
        await target.start()
        await source.start()
        await _until(lambda: source.synced)
        assert source.channel is not None
        crafted = [
            [
                "events",
                {"id": 900},
                {"id": 900, "ts": "2026-01-01 00:00:00", "kind": "x", "severity": "info", "message": "m", "data": "{}"},
            ],
            [f"events; ATTACH DATABASE '{evil}' AS evil; CREATE TABLE evil.t (x); --", {"id": 1}, {"id": 1}],
        ]
        frame = {"op": "txn", "epoch": source.epoch, "lsn": source.lsn + 1, "part": 0, "last": True}
        blob = json.dumps(crafted).encode()
        replies.append(await source.channel.request(frame, 5.0, blob))
        replies.append(await source.channel.request({**frame, "op": "sql", "sql": f"ATTACH '{evil}' AS e"}, 5.0))
        await source.stop()
        await target.stop()

    asyncio.run(scenario())
    assert replies[0]["ok"] is False and "unknown table" in str(replies[0]["error"])
    assert replies[1]["ok"] is False and "unknown op" in str(replies[1]["error"])
    assert not evil.exists()
    conn = sqlite3.connect(standby / "haoscar.db")
    assert conn.execute("SELECT count(*) FROM events WHERE id = 900").fetchone() == (0,)
    assert any(e.kind == "replication.refused_change" and e.severity == "critical" for e in events)


def test_the_channel_is_tls_only_and_needs_a_certificate_from_the_cluster_ca(tmp_path: Path) -> None:
    # Someone on the link (a compute node spoofing the active head's address): a plain hello signed with the real
    # key gets no welcome, and TLS with a certificate of another CA is refused before the HMAC layer is reached.
    from haoscar.replication.config import derived_secret
    from haoscar.replication.dbwire import pack
    from haoscar.tlsca import ensure_node_cert

    standby = tmp_path / "b"
    standby.mkdir()
    port = _port()
    events: list[Event] = []
    hello = pack(derived_secret(KEY, "db"), b"hello", {"op": "hello", "node": "a", "nonce": "ab" * 16})
    stranger = tmp_path / "stranger"
    ensure_node_cert(stranger, "a", ["127.0.0.1"])  # its own CA
    (stranger / "ca.crt").write_bytes((_tls(tmp_path) / "ca.crt").read_bytes())  # it may trust the real CA

    async def scenario() -> tuple[bytes, bytes]:
        bus = EventBus("test")
        bus.subscribe(events.append)
        target = DbTarget(_cfg("b", "a", standby, port), KEY, bus, lambda _s, _w: None)
        await target.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(hello)
        await writer.drain()
        plain = await asyncio.wait_for(reader.read(), 10.0)
        writer.close()
        ctx = client_context(stranger / "ca.crt", node_files(stranger, "a"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
        writer.write(hello)
        await writer.drain()
        try:
            foreign = await asyncio.wait_for(reader.read(), 10.0)
        except (ssl.SSLError, ConnectionError):
            foreign = b""
        writer.close()
        await target.stop()
        return plain, foreign

    plain, foreign = asyncio.run(scenario())
    assert plain == b"" or plain[0] == 0x15  # nothing, or a TLS alert record: never a welcome frame
    assert foreign == b""
    assert any(e.kind == "replication.auth_failed" and "TLS" in e.message for e in events)
