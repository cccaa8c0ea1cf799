"""The dashboard pages: both heads and the timeline (/dashboard), the nodes (/nodes), the events (/events) and the
switchover behind a confirmation (/dashboard/switchover).

Views only: each parses the query or form into a command's request, calls it (``render.call``; the switchover
through ``render.audited``) and renders the report, or the command's problems next to their fields. The page is
complete without JavaScript; ``static/dashboard.js`` refreshes its live parts from ``/api/dashboard``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from haoscar.commands.dashboard_view import DashboardRequest, dashboard
from haoscar.commands.ha import HaAction, HaActionDone, act
from haoscar.commands.heads_view import HeadsRequest, heads
from haoscar.commands.node_table import NodeTableRequest, node_table
from haoscar.commands.timeline import TimelineRequest, timeline
from haoscar.errors import UserError
from haoscar.web import render

__all__ = ["domid", "setup", "when"]

EVENTS_PAGE = 200
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def domid(*parts: object) -> str:
    """An element id from names (a head, a network, a resource): anything but letters, digits, - and _ becomes _,
    the same rule as ``domid`` in static/dashboard.js."""
    return "-".join(_ID_UNSAFE.sub("_", str(part)) for part in parts)


def when(wall: float | None) -> str:
    """A wall-clock time as people read it in a log (UTC), the same as ``when`` in static/dashboard.js."""
    if wall is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(wall)))


def _helpers() -> dict[str, Any]:
    return {"domid": domid, "when": when, "now": time.time()}


async def dashboard_page(request: web.Request) -> web.Response:
    view = await render.call(request, dashboard, DashboardRequest())
    return render.page(request, "dashboard/dashboard.html", view=view, **_helpers())


async def nodes_page(request: web.Request) -> web.Response:
    nodeset = request.query.get("nodeset", "")
    try:
        table = await render.call(request, node_table, NodeTableRequest(nodeset))
    except UserError as exc:
        errors = render.problems(exc)
        return render.page(
            request, "dashboard/nodes.html", status=400, table=None, nodeset=nodeset, errors=errors, **_helpers()
        )
    return render.page(request, "dashboard/nodes.html", table=table, nodeset=nodeset, errors={}, **_helpers())


async def events_page(request: web.Request) -> web.Response:
    view = await render.call(request, timeline, TimelineRequest(limit=EVENTS_PAGE))
    return render.page(request, "dashboard/events.html", timeline=view, **_helpers())


async def switchover_confirm(request: web.Request) -> web.Response:
    view = await render.call(request, heads, HeadsRequest())
    return render.page(request, "dashboard/switchover.html", heads=view, done=None, error="", **_helpers())


async def switchover_post(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("confirm") != "switchover":
        # Not from the confirmation form: ask again, change nothing.
        raise web.HTTPSeeOther("/dashboard/switchover")
    try:
        done: HaActionDone = await render.audited(
            request, "ha.switchover", {"op": "switchover"}, act, HaAction(op="switchover")
        )
    except UserError as exc:
        return render.page(
            request, "dashboard/switchover_done.html", status=409, done=None, error=str(exc), **_helpers()
        )
    return render.page(request, "dashboard/switchover_done.html", done=done, error="", **_helpers())


def setup(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/nodes", nodes_page)
    app.router.add_get("/events", events_page)
    app.router.add_get("/dashboard/switchover", switchover_confirm)
    app.router.add_post("/dashboard/switchover", switchover_post)
    render.add_nav(app, "/dashboard", "Dashboard")
    render.add_nav(app, "/nodes", "Nodes")
    render.add_nav(app, "/events", "Events")
