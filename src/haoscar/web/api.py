"""The console's JSON API: everything the dashboard pages show, GET only, behind the same login (session cookie).

    GET /api/dashboard            both heads, the timeline (newest 50 events), the last failover
    GET /api/heads                both heads (``haoscar ha status``'s source)
    GET /api/timeline?limit=N     events (newest N, 1-2000), failovers with their measured times, refusals
    GET /api/nodes?nodeset=SET    the nodes, or those of a node set / @group, with install states and stages
    GET /api/installs             installing (and installed or failed) nodes with the installer's live numbers
    GET /api/audit?limit=N        the console's audit log (oldest first, as ``haoscar web audit`` lists it)

Bad input answers 400 with ``{"errors": {field: [detail, ...]}}``, the command's own words (``render.problems``).
A change is never made through this API: the switchover is the confirmation form's POST (with its CSRF token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from haoscar.commands.audit import AuditQuery, audit_list
from haoscar.commands.dashboard_view import DashboardRequest, dashboard
from haoscar.commands.env import Env
from haoscar.commands.heads_view import HeadsRequest, heads
from haoscar.commands.install import MonitorInstalls, snapshot
from haoscar.commands.node_table import NodeTableRequest, node_table
from haoscar.commands.timeline import TimelineRequest, timeline
from haoscar.errors import FieldError, UserError
from haoscar.web import render

__all__ = ["setup"]

R = TypeVar("R")
T = TypeVar("T")


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise FieldError(name, f"{raw!r} is not a whole number", sep=" ") from None


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


async def _answer(request: web.Request, fn: Callable[[Env, R], T], make: Callable[[], R]) -> web.Response:
    """Call ``fn`` with the request ``make`` parses from the query; its report as JSON, or its problems (400)."""
    try:
        report: Any = await render.call(request, fn, make())
    except UserError as exc:
        return _json({"errors": render.problems(exc)}, status=400)
    if isinstance(report, list):
        return _json([row.as_dict() for row in report])
    return _json(report.as_dict())


async def api_dashboard(request: web.Request) -> web.Response:
    return await _answer(request, dashboard, DashboardRequest)


async def api_heads(request: web.Request) -> web.Response:
    return await _answer(request, heads, HeadsRequest)


async def api_timeline(request: web.Request) -> web.Response:
    return await _answer(request, timeline, lambda: TimelineRequest(limit=_int(request, "limit", 200)))


async def api_nodes(request: web.Request) -> web.Response:
    return await _answer(request, node_table, lambda: NodeTableRequest(request.query.get("nodeset", "")))


async def api_installs(request: web.Request) -> web.Response:
    return await _answer(request, snapshot, lambda: MonitorInstalls(request.query.get("nodeset") or None))


async def api_audit(request: web.Request) -> web.Response:
    def query() -> AuditQuery:
        return AuditQuery(_int(request, "limit", 100), action=request.query.get("action") or None)

    return await _answer(request, audit_list, query)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/dashboard", api_dashboard)
    app.router.add_get("/api/heads", api_heads)
    app.router.add_get("/api/timeline", api_timeline)
    app.router.add_get("/api/nodes", api_nodes)
    app.router.add_get("/api/installs", api_installs)
    app.router.add_get("/api/audit", api_audit)
