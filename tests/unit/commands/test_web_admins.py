"""The console's administrators: scrypt hashes with their parameters, the rules for names and passwords, the CLI
(password from stdin or a file, never argv; bad input exit 2 with nothing changed), the login throttle, the audit
log as the CLI shows it (network text escaped)."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from haoscar.commands.audit import AuditEntry, AuditQuery, audit_list, record
from haoscar.commands.env import Env
from haoscar.commands.web_admins import (
    AdminAdd,
    AdminDelete,
    AdminPasswd,
    admin_add,
    admin_delete,
    admin_list,
    admin_passwd,
    hash_password,
    needs_rehash,
    verify_password,
)
from haoscar.commands.web_sessions import (
    Login,
    LoginThrottled,
    SessionCheck,
    SessionExpired,
    Throttle,
    check_session,
    login,
)
from haoscar.db.models import WebAdmin
from haoscar.errors import FieldError

GOOD = "correct horse battery"
Cli = Callable[..., tuple[int, str, str]]


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> Env:
    with Env(state_dir=tmp_path / "state", clock=Clock()) as made:
        yield made


def _rows(state: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(state / "haoscar.db") as db:
        return db.execute("SELECT * FROM web_admins ORDER BY name").fetchall()


def test_the_hash_records_its_parameters_and_salt() -> None:
    one, two = hash_password(GOOD), hash_password(GOOD)
    assert one.startswith("scrypt$n=16384,r=8,p=1$") and one != two  # a salt of its own each time
    assert GOOD not in one
    assert verify_password(GOOD, one) and not verify_password(GOOD + "x", one)
    assert not verify_password(GOOD, None)  # an unknown name never matches


def test_a_hash_with_older_parameters_still_verifies_and_is_replaced_at_login(env: Env) -> None:
    admin_add(env, AdminAdd("alice", GOOD))
    weak = hash_password(GOOD, n=2**10)
    with env.database.session() as session:
        row = session.get(WebAdmin, "alice")
        assert row is not None
        row.password_hash = weak
    assert needs_rehash(weak) and verify_password(GOOD, weak)
    login(env, Login("alice", GOOD, "192.0.2.1"))
    with env.database.session(readonly=True) as session:
        row = session.get(WebAdmin, "alice")
        assert row is not None and row.password_hash.startswith("scrypt$n=16384,")


def test_add_list_passwd_delete(env: Env) -> None:
    admin_add(env, AdminAdd("alice", GOOD))
    done = login(env, Login("alice", GOOD, "192.0.2.1"))
    assert [(r.name, r.sessions) for r in admin_list(env)] == [("alice", 1)]
    admin_passwd(env, AdminPasswd("alice", "another good passphrase"))
    assert [r.sessions for r in admin_list(env)] == [0]  # a new password ends the sessions
    with pytest.raises(Exception, match="not logged in"):
        check_session(env, SessionCheck(done.token, 3600, 3600))
    login(env, Login("alice", "another good passphrase", "192.0.2.1"))
    admin_delete(env, AdminDelete("alice"))
    assert admin_list(env) == []


@pytest.mark.parametrize(
    ("name", "password", "field", "words"),
    [
        ("", GOOD, "name", "is empty"),
        ("Bad Name", GOOD, "name", "is not a valid name"),
        ("x" * 33, GOOD, "name", "is not a valid name"),
        ("bob", "", "password", "is empty"),
        ("bob", "short", "password", "too short (5 characters)"),
        ("bob", "aaaaaaaaaaaaaaaa", "password", "too easy to guess"),
        ("bob", "bob-bob-bob-bob-1", "password", "too easy to guess"),
        ("alice", GOOD, "name", "exists already"),
    ],
)
def test_bad_input_is_a_field_error_and_changes_nothing(
    env: Env, name: str, password: str, field: str, words: str
) -> None:
    admin_add(env, AdminAdd("alice", GOOD))
    before = _rows(env.state_dir)
    with pytest.raises(FieldError) as caught:
        admin_add(env, AdminAdd(name, password))
    assert caught.value.field == field and words in caught.value.detail
    assert _rows(env.state_dir) == before


def test_unknown_admin_for_passwd_and_delete(env: Env) -> None:
    for call in (
        lambda: admin_passwd(env, AdminPasswd("nobody", GOOD)),
        lambda: admin_delete(env, AdminDelete("nobody")),
    ):
        with pytest.raises(FieldError, match="no administrator 'nobody'") as caught:
            call()
        assert caught.value.field == "name"


def test_failed_logins_slow_down_per_address_and_per_name(env: Env) -> None:
    clock = env.clock
    assert isinstance(clock, Clock)
    admin_add(env, AdminAdd("alice", GOOD))
    policy = Throttle(free=3, window_s=600, base_s=10, cap_s=40)
    for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        with pytest.raises(FieldError, match="wrong name or password"):
            login(env, Login("alice", "not the password", source, policy))
    # A fourth address, the right password: the NAME has had 3 failures, so it waits 10 s after the last one.
    with pytest.raises(LoginThrottled, match=r"for this name \(3 in the last 10 minutes\): wait 10 s") as caught:
        login(env, Login("alice", GOOD, "192.0.2.9", policy))
    assert caught.value.field == "password"
    clock.now += 11
    assert login(env, Login("alice", GOOD, "192.0.2.9", policy)).admin == "alice"
    # One address guessing several names is slowed down too; the wait doubles with each further failure.
    for name in ("x1", "x2", "x3"):
        with pytest.raises(FieldError):
            login(env, Login(name, "guess guess guess", "198.51.100.7", policy))
    with pytest.raises(LoginThrottled, match="from this address"):
        login(env, Login("x4", "guess guess guess", "198.51.100.7", policy))
    clock.now += 11
    with pytest.raises(FieldError, match="wrong name or password"):
        login(env, Login("x4", "guess guess guess", "198.51.100.7", policy))
    clock.now += 11  # the 4th failure doubled the wait to 20 s
    with pytest.raises(LoginThrottled, match="wait 9 s"):
        login(env, Login("x5", "guess guess guess", "198.51.100.7", policy))
    # Outside the window the failures no longer count: no lockout lasts.
    clock.now += 700
    with pytest.raises(FieldError, match="wrong name or password"):
        login(env, Login("x6", "guess guess guess", "198.51.100.7", policy))


def test_sessions_end_at_their_absolute_and_idle_expiry(env: Env) -> None:
    clock = env.clock
    assert isinstance(clock, Clock)
    admin_add(env, AdminAdd("alice", GOOD))
    done = login(env, Login("alice", GOOD, "192.0.2.1"))
    check = SessionCheck(done.token, ttl_s=100, idle_s=40, touch_s=0)
    for _ in range(3):
        clock.now += 30
        assert check_session(env, check).admin == "alice"  # used every 30 s: the idle limit is never reached
    clock.now += 30  # 120 s after the login
    with pytest.raises(SessionExpired):
        check_session(env, check)
    done = login(env, Login("alice", GOOD, "192.0.2.1"))
    clock.now += 41
    with pytest.raises(SessionExpired):
        check_session(env, SessionCheck(done.token, ttl_s=100, idle_s=40, touch_s=0))


def test_the_audit_log_keeps_no_secret(env: Env) -> None:
    record(
        env, AuditEntry("alice", "192.0.2.1", "admin.add", "ok", {"name": "bob", "password": GOOD, "api_token": "t"})
    )
    (row,) = audit_list(env, AuditQuery())
    assert row.detail == {"name": "bob", "password": "***", "api_token": "***"}
    assert GOOD not in json.dumps(row.as_dict())


# ---------------------------------------------------------------------------------------------------- the CLI


def test_cli_admin_add_reads_the_password_from_stdin(
    haoscar: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = str(tmp_path / "s")
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD + "\n"))
    code, out, _ = haoscar("--state-dir", state, "web", "admin", "add", "alice")
    assert code == 0 and "added administrator alice" in out
    secret = tmp_path / "pw"
    secret.write_text("another good passphrase\n")
    code, _, _ = haoscar("--state-dir", state, "web", "admin", "passwd", "alice", "--password-file", str(secret))
    assert code == 0
    with Env(state_dir=Path(state)) as env:
        assert login(env, Login("alice", "another good passphrase", "192.0.2.1")).admin == "alice"
    code, out, _ = haoscar("--state-dir", state, "web", "admin", "list", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["alice"] and "scrypt$" not in out


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["add", ""], GOOD, "error: NAME is empty"),
        (["add", "Bad"], GOOD, "error: NAME 'Bad' is not a valid name"),
        (["add", "bob"], "", "error: password is empty"),
        (["add", "bob"], "short", "error: password is too short"),
        (["add", "alice"], GOOD, "error: NAME an administrator 'alice' exists already"),
        (["passwd", "nobody"], GOOD, "error: NAME there is no administrator 'nobody'"),
        (["delete", "nobody"], "", "error: NAME there is no administrator 'nobody'"),
        (["add", "bob", "--password-file", "/nonexistent/pw"], "", "error: --password-file cannot read"),
    ],
)
def test_cli_bad_input_exits_2_and_changes_nothing(
    haoscar: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, argv: list[str], stdin: str, message: str
) -> None:
    state = tmp_path / "s"
    with Env(state_dir=state) as env:
        admin_add(env, AdminAdd("alice", GOOD))
    before = _rows(state)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin + "\n"))
    code, _, err = haoscar("--state-dir", str(state), "web", "admin", *argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert _rows(state) == before


def test_cli_audit_escapes_what_came_from_the_network(haoscar: Cli, tmp_path: Path) -> None:
    state = tmp_path / "s"
    with Env(state_dir=state) as env:
        admin_add(env, AdminAdd("alice", GOOD))
        with pytest.raises(FieldError):
            login(env, Login("\x1b[2J[bold]evil[/]", "guess guess guess", "192.0.2.1"))
        login(env, Login("alice", GOOD, "192.0.2.1"))
    code, out, _ = haoscar("--state-dir", str(state), "web", "audit")
    assert code == 0
    assert "\x1b" not in out and "?[2J[bold]evil[/]" in out  # the control character neutralised, markup shown
    assert "failed" in out and "ok" in out and "login" in out
    code, out, _ = haoscar("--state-dir", str(state), "web", "audit", "--json")
    rows = json.loads(out)
    assert [(r["admin"], r["action"], r["outcome"]) for r in rows] == [
        ("\x1b[2J[bold]evil[/]", "login", "failed"),
        ("alice", "login", "ok"),
    ]
