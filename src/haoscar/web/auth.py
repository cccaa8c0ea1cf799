"""Login, logout and the middleware that lets no request reach a page without a live session.

Public: ``/login``, ``/static/*``, ``/healthz`` and ``/metrics`` (which checks its own bearer token). Anything else
without a session: a page (GET) redirects to ``/login?next=PATH`` (back there after the login: same-site paths
only, never another host), an API or stream request gets 401, a change gets 403. An expired session says so on the
login page. The session cookie is Secure, HttpOnly, SameSite=Strict, Path=/ (``__Host-`` prefix: no Domain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import web

from haoscar.commands.web_sessions import (
    Login,
    LoginThrottled,
    SessionCheck,
    SessionExpired,
    Throttle,
    check_session,
    login,
    logout,
)
from haoscar.errors import UserError
from haoscar.web.context import CTX, WebSettings
from haoscar.web.csrf import SESSION, Handler, login_cookie_name
from haoscar.web.render import CSRF, USER, call, page, problems, remote_of

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-haoscar-session"
SESSION_COOKIE_PLAIN = "haoscar-session"
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/metrics"})
PUBLIC_PREFIXES = ("/static/",)
API_PREFIXES = ("/api/", "/live/")


class KeyedLocks:
    """asyncio locks by key, dropped when nobody holds or waits for them (a flood of names leaves nothing behind)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def holding(self, *keys: str) -> AsyncIterator[None]:
        ordered = sorted(set(keys))  # always the same order: no deadlock between two attempts
        for key in ordered:
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for key in ordered:
                    await stack.enter_async_context(self._locks[key][0])
                yield
        finally:
            for key in ordered:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


LOGIN_LOCKS: web.AppKey[KeyedLocks] = web.AppKey("haoscar_login_locks", KeyedLocks)


def session_cookie_name(settings: WebSettings) -> str:
    return SESSION_COOKIE if settings.secure_cookies else SESSION_COOKIE_PLAIN


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def safe_next(value: str | None) -> str:
    """Where to go after the login: a path of this console only (``/x?y``), never ``//host``, ``/\\host``, a
    scheme or the login page itself."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or value.split("?")[0] in ("/login", "/logout"):
        return "/"
    return value


def _refusal(request: web.Request, expired: bool) -> web.HTTPException:
    """What a request without a live session gets: the login page for a page, 401 for JSON or a stream, else 403."""
    why = "your session expired; log in again" if expired else "log in first"
    if request.path.startswith(API_PREFIXES):
        return web.HTTPUnauthorized(text=why, content_type="text/plain")
    if request.method in ("GET", "HEAD"):
        query = f"next={quote(request.path_qs, safe='')}" + ("&expired=1" if expired else "")
        refusal: web.HTTPException = web.HTTPSeeOther(f"/login?{query}")
    else:
        refusal = web.HTTPForbidden(text=f"This change was refused: {why}. Nothing was changed.")
    return refusal


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_public(request.path):
        return await handler(request)
    settings = request.app[CTX].settings
    token = request.cookies.get(session_cookie_name(settings))
    if not token:
        raise _refusal(request, expired=False)
    check = SessionCheck(token, settings.session_ttl_s, settings.idle_ttl_s, settings.session_touch_s)
    try:
        info = await call(request, check_session, check)
    except SessionExpired:
        raise _refusal(request, expired=True) from None
    except UserError:
        raise _refusal(request, expired=False) from None
    request[SESSION], request[USER], request[CSRF] = info, info.admin, info.csrf_token
    return await handler(request)


def _login_page(
    request: web.Request, *, status: int = 200, errors: dict[str, list[str]] | None = None, name: str = ""
) -> web.Response:
    cookie = login_cookie_name(request)
    token = request.cookies.get(cookie) or secrets.token_urlsafe(32)
    notice = ""
    if request.query.get("expired"):
        notice = "Your session expired. Log in again to continue."
    elif request.query.get("bye"):
        notice = "You are logged out."
    response = page(
        request, "login.html", status=status, login_token=token, next=safe_next(request.query.get("next")),
        errors=errors or {}, name=name, notice=notice,
    )  # fmt: skip
    _set_cookie(request, response, cookie, token)
    return response


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    secure = request.app[CTX].settings.secure_cookies
    response.set_cookie(name, value, path="/", secure=secure, httponly=True, samesite="Strict")


def _del_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    secure = request.app[CTX].settings.secure_cookies
    response.del_cookie(name, path="/", secure=secure, httponly=True, samesite="Strict")


async def login_get(request: web.Request) -> web.StreamResponse:
    return _login_page(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    settings = request.app[CTX].settings
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    throttle = Throttle(settings.login_free, settings.login_window_s, settings.login_base_s, settings.login_cap_s)
    source = remote_of(request)
    try:
        # One attempt at a time per address and per name: parallel guesses would all pass the throttle's count
        # before any of their failures is recorded.
        async with request.app[LOGIN_LOCKS].holding(f"source:{source}", f"name:{name.strip()[:64]}"):
            done = await call(request, login, Login(name.strip(), password, source, throttle))
    except UserError as exc:
        status = 429 if isinstance(exc, LoginThrottled) else 401
        return _login_page(request, status=status, errors=problems(exc), name=name)
    target = safe_next(str(form.get("next", "")) or request.query.get("next"))
    response = web.HTTPSeeOther(target)
    _set_cookie(request, response, session_cookie_name(settings), done.token)
    _del_cookie(request, response, login_cookie_name(request))
    log.info("login %s from %s", done.admin, remote_of(request))
    raise response


async def logout_post(request: web.Request) -> web.StreamResponse:
    settings = request.app[CTX].settings
    token = request.cookies.get(session_cookie_name(settings), "")
    await asyncio.to_thread(_logout, request, token)
    response = web.HTTPSeeOther("/login?bye=1")
    _del_cookie(request, response, session_cookie_name(settings))
    raise response


def _logout(request: web.Request, token: str) -> None:
    env = request.app[CTX].make_env()
    try:
        logout(env, token, remote_of(request))
    finally:
        env.close()


def setup(app: web.Application) -> None:
    app[LOGIN_LOCKS] = KeyedLocks()
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout_post)
