"""Server-Sent Events: unknown MACs as they ask for DHCP (/live/macs) and installing nodes' stages (/live/installs).

Each stream reads the same source as the CLI: ``mac list`` (the sightings ``mac collect`` records, from a terminal
or from the wizard) and ``install monitor`` (``commands.install.snapshot``), once a second, and sends a row when it
changed. The data is JSON (the page puts it in with ``textContent``: a DHCP host name is the network's text).

Bounded: a heartbeat comment every ``heartbeat_s`` (15 s), at most ``per_session`` streams per login and ``total``
in all (429 beyond), and a stream ends when its session does (logout or expiry: checked at every poll without
extending the session's idle time) or when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from haoscar.commands.env import Env
from haoscar.commands.web_sessions import SessionCheck, check_session
from haoscar.errors import UserError
from haoscar.web import render
from haoscar.web.auth import session_cookie_name
from haoscar.web.context import CTX
from haoscar.web.wizard_data import free_nodes, install_rows, sighting_rows


@dataclass
class LiveSettings:
    heartbeat_s: float = 15.0
    poll_s: float = 1.0
    per_session: int = 4
    total: int = 32


@dataclass
class Streams:
    settings: LiveSettings = field(default_factory=LiveSettings)
    open: Counter[str] = field(default_factory=Counter)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total(self) -> int:
        return sum(self.open.values())


STREAMS: web.AppKey[Streams] = web.AppKey("haoscar_live_streams", Streams)

Rows = Callable[[Env], dict[str, dict[str, Any]]]  # key -> row, in the order they are shown


def event(kind: str, data: object) -> bytes:
    """One SSE event; the JSON is one line (json.dumps escapes every newline)."""
    return f"event: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode()


def mac_rows(env: Env) -> dict[str, dict[str, Any]]:
    rows = {f"mac:{row['mac']}": {**row, "index": i} for i, row in enumerate(sighting_rows(env), start=1)}
    rows["free"] = {"free": free_nodes(env)}
    return rows


def install_rows_by_node(env: Env) -> dict[str, dict[str, Any]]:
    return {f"node:{row['node']}": row for row in install_rows(env)}


async def _alive(request: web.Request, token: str) -> str | None:
    """None while the session lives, else why the stream ends."""
    settings = request.app[CTX].settings
    check = SessionCheck(token, settings.session_ttl_s, settings.idle_ttl_s, touch_s=float("inf"))
    try:
        await render.call(request, check_session, check)
    except UserError as exc:
        return str(exc)
    return None


def _changes(kinds: tuple[str, str], last: dict[str, str], rows: dict[str, dict[str, Any]]) -> list[bytes]:
    out: list[bytes] = []
    for key, row in rows.items():
        text = json.dumps(row, sort_keys=True)
        if last.get(key) != text:
            last[key] = text
            out.append(event("free" if key == "free" else kinds[0], row))
    for key in [k for k in last if k not in rows]:
        del last[key]
        out.append(event(kinds[1], {"key": key.partition(":")[2]}))
    return out


async def _pump(request: web.Request, response: web.StreamResponse, rows: Rows, kinds: tuple[str, str]) -> None:
    streams = request.app[STREAMS]
    token = request.cookies.get(session_cookie_name(request.app[CTX].settings), "")
    loop = asyncio.get_running_loop()
    last: dict[str, str] = {}
    sent = loop.time()
    while not streams.closing.is_set():
        why = await _alive(request, token)
        if why is not None:
            await response.write(event("end", {"reason": why}))
            return
        for chunk in _changes(kinds, last, await render.call(request, lambda env, _r: rows(env), None)):
            await response.write(chunk)
            sent = loop.time()
        if loop.time() - sent >= streams.settings.heartbeat_s:
            await response.write(b": keepalive\n\n")
            sent = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(streams.closing.wait(), streams.settings.poll_s)
    await response.write(event("end", {"reason": "the server is stopping"}))


async def _stream(request: web.Request, rows: Rows, kinds: tuple[str, str]) -> web.StreamResponse:
    streams = request.app[STREAMS]
    user = render.user_of(request)
    if streams.total >= streams.settings.total or streams.open[user] >= streams.settings.per_session:
        raise web.HTTPTooManyRequests(text="too many live streams open; close another page first")
    streams.open[user] += 1
    try:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        with contextlib.suppress(ConnectionResetError):  # the browser went away
            await _pump(request, response, rows, kinds)
        return response
    finally:
        streams.open[user] -= 1
        if streams.open[user] <= 0:
            del streams.open[user]


async def live_macs(request: web.Request) -> web.StreamResponse:
    """``sighting`` events (a new or changed unknown MAC), ``gone`` (it was assigned), ``free`` (nodes without one)."""
    return await _stream(request, mac_rows, ("sighting", "gone"))


async def live_installs(request: web.Request) -> web.StreamResponse:
    """``install`` events (a node's state, stage, percent, rate changed), ``gone`` (the node was deleted)."""
    return await _stream(request, install_rows_by_node, ("install", "gone"))


async def _close(app: web.Application) -> None:
    app[STREAMS].closing.set()


def setup(app: web.Application) -> None:
    app[STREAMS] = Streams()
    app.on_shutdown.append(_close)
    app.router.add_get("/live/macs", live_macs)
    app.router.add_get("/live/installs", live_installs)
