"""Helpers for the console's unit tests (no pytest plugin: each test runs its coroutine with ``run_console``).

    from webtest import Browser, run_console   # this directory is on sys.path (pytest's rootdir-less import)

    def test_x(console_ctx):
        async def scenario(b: Browser) -> None:
            await b.login()
            page = await b.get("/dashboard")            # aiohttp ClientResponse, body read: b.text
            assert page.status == 200
            await b.post("/wizard/network", {"field": "v"})   # csrf_token + Origin added for you
        run_console(console_ctx, scenario)

The server is aiohttp's TestServer on 127.0.0.1 over plain HTTP, with ``secure_cookies=False`` (a Secure cookie is
not sent back over HTTP); everything else (middlewares, limits, the database) is the real thing.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from haoscar.commands.env import Env
from haoscar.commands.web_admins import AdminAdd, admin_add
from haoscar.web.app import create_app
from haoscar.web.context import WebContext, WebSettings, web_context

ADMIN = "admin"
PASSWORD = "correct horse battery"
T = TypeVar("T")
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_NEXT = re.compile(r'name="next" value="([^"]*)"')


def add_admin(state_dir: Path, name: str = ADMIN, password: str = PASSWORD) -> None:
    with Env(state_dir=state_dir) as env:
        admin_add(env, AdminAdd(name, password))


class FakeClock:
    """A wall clock a test moves by hand (``clock.now += 61``): expiry and throttling without sleeping."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


def make_ctx(state_dir: Path, clock: FakeClock | None = None, **settings: Any) -> WebContext:
    """A console context on ``state_dir`` for tests over plain HTTP (``settings`` override WebSettings)."""
    base = replace(WebSettings(), secure_cookies=False)
    return web_context(state_dir, replace(base, **settings), clock)


class Browser:
    """A test client that behaves like a browser on the console's pages: cookies, the CSRF token of the last page,
    and the Origin header of this console on every post."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.csrf = ""
        self.text = ""
        self.origin = str(client.make_url("/")).rstrip("/")

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        kwargs.setdefault("allow_redirects", False)
        response = await self.client.get(path, **kwargs)
        self.text = await response.text()
        found = _CSRF.search(self.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(
        self,
        path: str,
        data: Mapping[str, str] | None = None,
        *,
        csrf: bool = True,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        form = dict(data or {})
        if csrf and "csrf_token" not in form:
            form["csrf_token"] = self.csrf
        sent = {"Origin": self.origin if origin is None else origin, **(headers or {})}
        kwargs.setdefault("allow_redirects", False)
        response = await self.client.post(path, data=form, headers=sent, **kwargs)
        self.text = await response.text()
        return response

    async def login(self, name: str = ADMIN, password: str = PASSWORD, next_path: str = "") -> aiohttp.ClientResponse:
        """Log in through the form as a browser does: GET /login?next=NEXT_PATH (give it URL-encoded), POST the form
        with its hidden fields (the token, where to go next)."""
        await self.get("/login" + (f"?next={next_path}" if next_path else ""))
        found = _LOGIN_TOKEN.search(self.text)
        assert found, self.text
        hidden_next = _NEXT.search(self.text)
        form = {"name": name, "password": password, "csrf_token": found.group(1)}
        form["next"] = html.unescape(hidden_next.group(1)) if hidden_next else "/"
        response = await self.post("/login", form, csrf=False)
        if response.status == 303 and not response.headers["Location"].startswith("/login"):
            await self.get("/no-such-page")  # a page of a logged-in user (404 too) carries the session's CSRF token
            self.text = ""
        return response


async def _session(
    ctx: WebContext, scenario: Callable[[Browser], Awaitable[T]], setup: Callable[[web.Application], None] | None
) -> T:
    app = create_app(ctx)
    if setup is not None:
        setup(app)
    jar = aiohttp.CookieJar(unsafe=True)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server, cookie_jar=jar) as client:
        return await scenario(Browser(client))


def run_console(
    ctx: WebContext,
    scenario: Callable[[Browser], Awaitable[T]],
    setup: Callable[[web.Application], None] | None = None,
) -> T:
    """Start the console of ``ctx`` on a test server (``setup(app)`` may add routes first, as a page module's
    ``setup`` does), run ``scenario`` with a fresh Browser, stop it."""
    return asyncio.run(_session(ctx, scenario, setup))
