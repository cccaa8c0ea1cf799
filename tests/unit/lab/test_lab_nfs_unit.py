"""The userspace NFS client's pure parts: the SETATTR COMPOUND it sends, reply parsing, mount arguments."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Any, ClassVar

import pytest

from haoscar.errors import UserError
from haoscar.lab import nfs4_status, nfs_client, nfs_mounts
from haoscar.lab.nfs4_setattr import Attrs, Creds, compound, parse_status
from haoscar.lab.nfs4_status import status_errno


def _words(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 4}I", data))


def test_setattr_compound_looks_up_each_component_then_sets_mode_and_owner() -> None:
    call = compound(["home", "u1"], Attrs(mode=0o700, uid=1000), Creds(1000, 100), xid=7)
    words = _words(call[:24])
    assert words == [7, 0, 2, 100003, 4, 1]  # xid, CALL, RPC v2, NFS program, version 4, COMPOUND
    assert b"\x00\x00\x00\x18" in call  # PUTROOTFH
    assert call.count(b"\x00\x00\x00\x0f\x00\x00\x00\x04home") == 1  # LOOKUP "home"
    # SETATTR: anonymous stateid, bitmap word 1 with MODE (33) and OWNER (36), then 0700 and the string "1000"
    tail = call[call.index(b"\x00\x00\x00\x22" + b"\x00" * 16) + 20 :]
    assert _words(tail[:12]) == [2, 0, (1 << 1) | (1 << 4)]
    assert tail[12:16] == struct.pack(">I", 12) and tail[16:20] == struct.pack(">I", 0o700)
    assert tail[20:28] == struct.pack(">I", 4) + b"1000"


def test_reply_status_and_errors() -> None:
    ok = struct.pack(">IIIII", 9, 1, 0, 0, 0) + struct.pack(">II", 0, 0)
    assert parse_status(ok, 9) == 0
    denied = struct.pack(">IIIII", 9, 1, 0, 0, 0) + struct.pack(">II", 0, 13)
    assert parse_status(denied, 9) == 13 and status_errno(13) == errno.EACCES
    assert status_errno(66) == errno.ENOTEMPTY and status_errno(69) == errno.EDQUOT
    # NFSv4-only statuses: never libnfs's ERANGE ("Numerical result out of range") for an application to see
    assert (status_errno(10013), status_errno(10039), status_errno(10022)) == (errno.EAGAIN, errno.EINVAL, errno.EIO)
    assert status_errno(10099) == errno.EIO and nfs4_status.name_of(10099) == "nfsstat4 10099"
    with pytest.raises(OSError, match="refused"):
        parse_status(ok, 10)


class _NoLab:
    dir = Path("/nonexistent")


@pytest.mark.parametrize(
    ("server", "export", "mountpoint", "field"),
    [
        ("alias", "/home", "/home", "server"),
        ("198.18.0.3", "home", "/home", "export"),
        ("198.18.0.3", "/home", "/a/../b", "mountpoint"),
    ],
)
def test_bad_mount_arguments_name_the_field(server: str, export: str, mountpoint: str, field: str) -> None:
    with pytest.raises(UserError, match=f"^{field} "):
        nfs_mounts.mount(_NoLab(), "node01", server, export, mountpoint)  # type: ignore[arg-type]


def test_is_mounted_reads_the_process_mount_table() -> None:
    assert not nfs_mounts.is_mounted(1 << 22, "/home")  # no such process


class _FakeConnection:
    """Stands in for a libnfs connection: the first one made times out on its first call, later ones answer."""

    made: ClassVar[list[_FakeConnection]] = []

    def __init__(self, server: str, export: str, timeout_ms: int = 0) -> None:
        self.first = not _FakeConnection.made
        self.closed = False
        self.calls = 0
        _FakeConnection.made.append(self)

    def as_user(self, creds: Creds) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def stat(self, path: str, follow: bool = False) -> str:
        if self.closed:
            raise AssertionError("a closed connection was used")
        self.calls += 1
        if self.first and self.calls == 1:
            raise nfs_client.NfsError(errno.EINTR, "stat: RPC timed out")
        return f"stat of {path}"


def test_a_timed_out_call_is_retried_on_a_fresh_connection_like_a_hard_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    """An RPC timeout is not an answer: the call is not failed with EIO/EINTR (what an application would see as an
    I/O error) but made again on a new connection; the timed-out context is closed and never used again (its
    request may still be queued there)."""
    _FakeConnection.made = []
    monkeypatch.setattr(nfs_client, "Connection", _FakeConnection)
    session = nfs_client.Session("198.18.0.3", "/home", retry_pause_s=0.0)
    answer: Any = session.call(Creds(1000, 1000), lambda conn: conn.stat("/home/alice"))
    assert answer == "stat of /home/alice"
    first, second = _FakeConnection.made
    assert (first.closed, first.calls, second.calls) == (True, 1, 1)
    assert session.reconnects == 1


class _CreatingServer:
    """A server whose first OPEN creates the file but loses its confirmation (NFS4ERR_EXPIRED, which libnfs 4.0
    reports as -ERANGE), and which refuses a create of an existing file (EEXIST), as libnfs does."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.opens: list[tuple[str, int]] = []


class _OpenConnection:
    server: ClassVar[_CreatingServer]

    def __init__(self, server: str, export: str, timeout_ms: int = 0) -> None:
        self.closed = False

    def as_user(self, creds: Creds) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def stat(self, path: str, follow: bool = False) -> str:
        if path != "/" and path not in self.server.files:
            raise nfs_client.NfsError(errno.ENOENT, f"stat {path}: no such file")
        return f"stat of {path}"

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        assert not self.closed, "a closed connection was used"
        self.server.opens.append((path, flags))
        if flags & os.O_CREAT and path in self.server.files:
            raise nfs_client.NfsError(errno.EEXIST, f"open {path}: file exists")
        if flags & os.O_CREAT:
            self.server.files.add(path)
            if len(self.server.opens) == 1:
                raise nfs_client.NfsError(errno.ERANGE, f"open {path}: OPEN_CONFIRM failed with NFS4ERR_EXPIRED")
        return 7

    def setattr(self, path: str, attrs: object) -> None:
        pass


def test_a_create_whose_confirmation_was_lost_opens_the_file_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """`echo x > /home/alice/new` must not fail with "File exists" because the OPEN that created the file lost its
    lease before its confirmation: the retry on a fresh connection opens that file instead of creating it again;
    a later reopen (after a failover) never creates nor truncates."""
    _OpenConnection.server = _CreatingServer()
    monkeypatch.setattr(nfs_client, "Connection", _OpenConnection)
    session = nfs_client.Session("198.18.0.3", "/home", retry_pause_s=0.0)
    creds = Creds(1000, 1000)
    number = session.open("/alice/new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, creds)
    assert session.reconnects == 1  # the stale state was renewed once
    opens = _OpenConnection.server.opens
    assert [bool(flags & os.O_CREAT) for _, flags in opens] == [True, False]
    entry = session.entry(number)
    assert entry.flags & (os.O_CREAT | os.O_EXCL | os.O_TRUNC) == 0 and entry.flags & os.O_WRONLY


class _Lib:
    """libnfs's error text for a failed call, as ``nfs_get_error`` gives it."""

    def __init__(self, message: str) -> None:
        self.message = message

    def nfs_get_error(self, ctx: object) -> bytes:
        return self.message.encode()


def _failed(result: int, message: str) -> nfs_client.NfsError:
    conn = nfs_client.Connection.__new__(nfs_client.Connection)
    conn.lib, conn.ctx = _Lib(message), 1  # type: ignore[assignment]
    with pytest.raises(nfs_client.NfsError) as caught:
        conn._check(result, "open /u1/new")
    return caught.value


@pytest.mark.parametrize(
    ("status", "code"),
    [("NFS4ERR_EXPIRED", errno.EIO), ("NFS4ERR_DQUOT", errno.EDQUOT), ("NFS4ERR_BADOWNER", errno.EINVAL)],
)
def test_libnfs_erange_becomes_the_errno_of_the_status_it_names(status: str, code: int) -> None:
    error = _failed(-errno.ERANGE, f'open call failed with "NFS4: OPEN (path /u1) failed with {status}(-5)"')
    assert (error.errno, error.status) == (code, status)
    assert status in str(error)  # the log line says what the server answered
    plain = _failed(-errno.ENOENT, "NFS4: LOOKUP (path /u1/x) failed with NFS4ERR_NOENT(-2)")
    assert (plain.errno, plain.status) == (errno.ENOENT, "NFS4ERR_NOENT")


def test_each_connection_is_its_own_nfs_client() -> None:
    """libnfs's default client ID ("Libnfs pid:PID SECONDS") is shared by connections made in one second, and by
    two lab nodes whose processes have the same pid: every identity differs, and so does every verifier."""
    identities = [nfs_client.client_identity() for _ in range(50)]
    names = {name for name, _ in identities}
    assert len(names) == 50 and len({verifier for _, verifier in identities}) == 50
    assert all(name.startswith(b"haoscar-nfs ") and len(name) < 100 for name in names)


class _AnsweringConnection:
    """A connection whose server answers each call with the next status of ``answers`` ("" is success)."""

    answers: ClassVar[list[str]]
    made: ClassVar[list[_AnsweringConnection]]

    def __init__(self, server: str, export: str, timeout_ms: int = 0) -> None:
        self.closed = False
        _AnsweringConnection.made.append(self)

    def as_user(self, creds: Creds) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def stat(self, path: str, follow: bool = False) -> str:
        assert not self.closed, "a closed connection was used"
        status = self.answers.pop(0)
        if status:
            code = nfs4_status.errno_of(status)
            raise nfs_client.NfsError(code, f"stat {path}: NFS4: GETATTR (path {path}) failed with {status}(-5)")
        return f"stat of {path}"


def _session(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> nfs_client.Session:
    _AnsweringConnection.answers, _AnsweringConnection.made = answers, []
    monkeypatch.setattr(nfs_client, "Connection", _AnsweringConnection)
    return nfs_client.Session("198.18.0.3", "/home", retry_pause_s=0.0)


def test_a_server_in_grace_or_busy_is_asked_again_on_the_same_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    session = _session(monkeypatch, ["NFS4ERR_GRACE", "NFS4ERR_GRACE", "NFS4ERR_DELAY", ""])
    answer: Any = session.call(Creds(1000, 1000), lambda conn: conn.stat("/u1"))
    assert answer == "stat of /u1"
    assert (len(_AnsweringConnection.made), session.reconnects) == (1, 0)


def test_a_lost_nfs4_state_is_renewed_by_fresh_connections_then_is_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    renewals = nfs_client.RENEWALS
    assert renewals >= 2
    session = _session(monkeypatch, ["NFS4ERR_EXPIRED", "NFS4ERR_BAD_SEQID", ""])
    answer: Any = session.call(Creds(1000, 1000), lambda conn: conn.stat("/u1"))
    assert answer == "stat of /u1"
    first, second, third = _AnsweringConnection.made
    assert first.closed and second.closed and not third.closed

    session = _session(monkeypatch, ["NFS4ERR_STALE_CLIENTID"] * (renewals + 1))
    with pytest.raises(nfs_client.NfsError) as caught:
        session.call(Creds(1000, 1000), lambda conn: conn.stat("/u1"))
    assert caught.value.errno == errno.EIO and caught.value.status == "NFS4ERR_STALE_CLIENTID"
    assert len(_AnsweringConnection.made) == renewals + 1


def test_a_status_that_is_an_answer_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    session = _session(monkeypatch, ["NFS4ERR_DQUOT"])
    with pytest.raises(nfs_client.NfsError) as caught:
        session.call(Creds(1000, 1000), lambda conn: conn.stat("/u1"))
    assert caught.value.errno == errno.EDQUOT and len(_AnsweringConnection.made) == 1
