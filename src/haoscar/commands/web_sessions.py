"""Logging in to the web console, its sessions and the slowdown after failed logins (docs/web.md#sessions).

A session is a random 256-bit token in the browser's cookie; the database keeps only its SHA-256, the
administrator, the CSRF token of its forms (a second random value, tied to this session), its start and the last
time it was used. It ends at ``ttl_s`` after the login (absolute) or ``idle_s`` after its last use (idle), whichever
comes first, or at logout. Sessions are in the cluster database: a failover does not log anyone out.

Failed logins slow the next ones down instead of locking an account (which a stranger could then keep locked):
after ``free`` failures within ``window_s`` from one source address, or for one account name, each further
attempt must wait ``base_s`` x 2^(failures - free) seconds (at most ``cap_s``) after the last failure; an attempt
too early is refused with the wait in the message, without checking the password and without counting as a
failure. The counts come from the audit log, so they survive a restart and follow a failover.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from haoscar.commands.audit import AuditEntry, add_entry
from haoscar.commands.env import Env
from haoscar.commands.web_admins import hash_password, needs_rehash, verify_password
from haoscar.db.models import WebAdmin, WebAudit, WebSession
from haoscar.errors import FieldError, UserError

LOGIN_ACTION = "login"
LOGOUT_ACTION = "logout"
WRONG = "wrong name or password"


@dataclass(frozen=True)
class Throttle:
    free: int = 5
    window_s: float = 900.0
    base_s: float = 2.0
    cap_s: float = 60.0

    def wait(self, failures: int, since_last: float) -> float:
        """Seconds still to wait before the next attempt (0: go ahead)."""
        if failures < self.free:
            return 0.0
        delay = min(self.cap_s, self.base_s * 2 ** (failures - self.free))
        return max(0.0, float(delay) - since_last)


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    source: str
    throttle: Throttle = Throttle()


@dataclass(frozen=True)
class LoggedIn:
    admin: str
    token: str  # for the cookie; never stored
    csrf_token: str


@dataclass(frozen=True)
class SessionCheck:
    token: str
    ttl_s: float
    idle_s: float
    touch_s: float = 15.0  # last use is written at most this often (a page view is not a database write each time)


@dataclass(frozen=True)
class SessionInfo:
    admin: str
    csrf_token: str
    created_s: float


class SessionExpired(UserError):
    """The session ended (absolute or idle expiry): log in again."""


class LoginThrottled(FieldError):
    """Too many failed logins lately: the message says how long to wait."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _failures(session: Session, column: InstrumentedAttribute[str], value: str, since: float) -> tuple[int, float]:
    row = session.execute(
        select(func.count(), func.max(WebAudit.ts)).where(
            WebAudit.action == LOGIN_ACTION, WebAudit.outcome == "failed", column == value, WebAudit.ts >= since
        )
    ).one()
    return int(row[0]), float(row[1] or 0.0)


def _check_throttle(session: Session, request: Login, now: float) -> None:
    policy = request.throttle
    since = now - policy.window_s
    for column, value, what in (
        (WebAudit.source, request.source, "from this address"),
        (WebAudit.admin, request.name[:64], "for this name"),
    ):
        failures, last = _failures(session, column, value, since)
        wait = policy.wait(failures, now - last)
        if wait > 0:
            raise LoginThrottled(
                "password",
                f"too many failed logins {what} ({failures} in the last {policy.window_s / 60:.0f} minutes): "
                f"wait {math.ceil(wait)} s and try again",
            )


def login(env: Env, request: Login) -> LoggedIn:
    """Check the name and password, open a session, and record the attempt in the audit log either way.

    Raises ``LoginThrottled`` (nothing recorded) or ``FieldError`` on ``password`` (recorded as failed)."""
    now = env.clock.wall()
    with env.database.session(readonly=True) as session:
        _check_throttle(session, request, now)
        admin = session.get(WebAdmin, request.name) if request.name else None
        stored = admin.password_hash if admin is not None else None
    if not verify_password(request.password, stored):
        with env.database.session() as session:
            add_entry(session, AuditEntry(request.name, request.source, LOGIN_ACTION, "failed", message=WRONG), now)
        raise FieldError("password", WRONG)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with env.database.session() as session:
        admin = session.get(WebAdmin, request.name)
        if admin is None:  # deleted between the check and now
            raise FieldError("password", WRONG)
        if needs_rehash(admin.password_hash):
            admin.password_hash = hash_password(request.password)
        session.add(
            WebSession(
                token_hash=token_hash(token),
                admin=admin.name,
                csrf_token=csrf,
                source=request.source[:64],
                created_s=now,
                last_seen_s=now,
            )
        )
        add_entry(session, AuditEntry(admin.name, request.source, LOGIN_ACTION, "ok"), now)
    return LoggedIn(request.name, token, csrf)


def check_session(env: Env, request: SessionCheck) -> SessionInfo:
    """The session of ``token``: ``SessionExpired`` when it ended, ``UserError`` when there is none."""
    now = env.clock.wall()
    key = token_hash(request.token)
    with env.database.session(readonly=True) as session:
        row = session.get(WebSession, key)
        if row is None:
            raise UserError("not logged in")
        info = SessionInfo(row.admin, row.csrf_token, row.created_s)
        last_seen = row.last_seen_s
    if now - info.created_s > request.ttl_s or now - last_seen > request.idle_s:
        # The row stays (useless: it is refused) until `purge_expired`, so every request of that browser, a page
        # or a background poll, hears "expired" rather than "not logged in".
        raise SessionExpired("your session expired; log in again")
    if now - last_seen > request.touch_s:
        with env.database.session() as session:
            row = session.get(WebSession, key)
            if row is not None:
                row.last_seen_s = now
    return info


def logout(env: Env, token: str, source: str) -> str | None:
    """End the session of ``token`` (the administrator it was, or None when there was none)."""
    with env.database.session() as session:
        row = session.get(WebSession, token_hash(token))
        if row is None:
            return None
        admin = row.admin
        session.delete(row)
        add_entry(session, AuditEntry(admin, source, LOGOUT_ACTION, "ok"), env.clock.wall())
    return admin


def csrf_matches(info: SessionInfo, sent: str | None) -> bool:
    """The token a form or fetch() sent is this session's (compared in constant time)."""
    return sent is not None and hmac.compare_digest(info.csrf_token.encode(), sent.encode())


PURGE_GRACE_S = 86400.0


def purge_expired(env: Env, ttl_s: float, idle_s: float, grace_s: float = PURGE_GRACE_S) -> int:
    """Delete sessions expired (either way) for more than ``grace_s`` (until then they answer "expired"); the server
    does it now and then. Returns how many."""
    now = env.clock.wall() - grace_s
    with env.database.session() as session:
        result = session.execute(
            delete(WebSession).where((WebSession.created_s < now - ttl_s) | (WebSession.last_seen_s < now - idle_s))
        )
        return int(getattr(result, "rowcount", 0) or 0)
