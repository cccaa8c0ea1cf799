"""The web console's audit log (docs/web.md#audit): every change made through the console, every login (success or
failure) and logout, with the time, the administrator, the source address, the action, its detail and outcome.

Kept in the cluster database (replicated: it follows a failover). Text in it came from the network (a name typed
at the login form, a field of a form): whoever shows it escapes it (the CLI through ``wire_text``, the pages
through Jinja's autoescape).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.commands.env import Env
from haoscar.db.models import WebAudit
from haoscar.errors import FieldError

OUTCOMES = ("ok", "error", "failed", "refused")
# Keys whose values never reach the log, whatever a caller passes.
_SECRET_WORDS = ("password", "secret", "token", "key")
_MAX_TEXT = 2000


@dataclass(frozen=True)
class AuditEntry:
    admin: str
    source: str
    action: str
    outcome: str  # one of OUTCOMES
    detail: Mapping[str, object] | None = None
    message: str = ""


@dataclass(frozen=True)
class AuditQuery:
    limit: int = 100
    admin: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    admin: str
    source: str
    action: str
    outcome: str
    detail: dict[str, Any]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean_detail(detail: Mapping[str, object] | None) -> dict[str, Any]:
    """What of ``detail`` is kept: JSON values (others as text), secrets replaced by ``***``, text capped."""
    out: dict[str, Any] = {}
    for key, value in (detail or {}).items():
        name = str(key)[:64]
        if any(word in name.lower() for word in _SECRET_WORDS):
            out[name] = "***"
        elif value is None or isinstance(value, bool | int | float):
            out[name] = value
        elif isinstance(value, list | tuple):
            out[name] = [str(v)[:_MAX_TEXT] for v in value][:100]
        else:
            out[name] = str(value)[:_MAX_TEXT]
    json.dumps(out)  # always serialisable by now
    return out


def add_entry(session: Session, entry: AuditEntry, ts: float) -> None:
    """Add ``entry`` to ``session`` (written with the rest of its transaction)."""
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"outcome {entry.outcome!r} is not one of {', '.join(OUTCOMES)}")
    session.add(
        WebAudit(
            ts=ts,
            admin=entry.admin[:64],
            source=entry.source[:64],
            action=entry.action[:64],
            detail=clean_detail(entry.detail),
            outcome=entry.outcome,
            message=entry.message[:_MAX_TEXT],
        )
    )


def record(env: Env, entry: AuditEntry) -> None:
    """Write one entry now, in a transaction of its own."""
    with env.database.session() as session:
        add_entry(session, entry, env.clock.wall())


def audit_list(env: Env, query: AuditQuery) -> list[AuditRow]:
    """The latest ``limit`` entries, oldest first (as a log reads)."""
    if query.limit < 1 or query.limit > 100_000:
        raise FieldError("limit", f"{query.limit} is out of range; show between 1 and 100000 entries")
    statement = select(WebAudit).order_by(WebAudit.id.desc()).limit(query.limit)
    if query.admin is not None:
        statement = statement.where(WebAudit.admin == query.admin)
    if query.action is not None:
        statement = statement.where(WebAudit.action == query.action)
    with env.database.session(readonly=True) as session:
        rows = session.scalars(statement).all()
        return [
            AuditRow(r.id, r.ts, r.admin, r.source, r.action, r.outcome, dict(r.detail or {}), r.message)
            for r in reversed(rows)
        ]
