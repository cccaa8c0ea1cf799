"""``/audit``: the console's audit log as a page (the same entries as ``haoscar web audit``), newest first.

Everything in it that came from the network (a name typed at the login form, a form's fields, an error message)
is escaped by Jinja's autoescape like every value a template prints.
"""

from __future__ import annotations

import time

from aiohttp import web

from haoscar.commands.audit import AuditQuery, AuditRow, audit_list
from haoscar.errors import UserError
from haoscar.web import render

LIMIT = 200


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _detail(row: AuditRow) -> str:
    return " ".join(f"{key}={value}" for key, value in row.detail.items())


async def audit_page(request: web.Request) -> web.Response:
    action = request.query.get("action") or None
    admin = request.query.get("admin") or None
    errors: dict[str, list[str]] = {}
    try:
        rows = await render.call(request, audit_list, AuditQuery(LIMIT, admin, action))
    except UserError as exc:
        rows, errors = [], render.problems(exc)
    entries = [
        {"when": _when(r.ts), "admin": r.admin, "source": r.source, "action": r.action, "outcome": r.outcome,
         "detail": _detail(r), "message": r.message}
        for r in reversed(rows)
    ]  # fmt: skip
    return render.page(
        request, "audit.html", entries=entries, action=action or "", admin=admin or "", limit=LIMIT, errors=errors
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/audit", audit_page)
    render.add_nav(app, "/audit", "Audit")
