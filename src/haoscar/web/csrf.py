"""Cross-site request forgery: every state-changing request (POST, PUT, PATCH, DELETE) must come from a page of this
console (Origin, else Referer, of this very scheme, host and port) and carry the session's synchronizer token, as
the form field ``csrf_token`` or the header ``X-CSRF-Token`` (fetch()). The login form, before any session, carries
a token that must equal its own cookie's (double submit). A refused request gets 403 and reaches no handler, so
nothing changes. SameSite=Strict cookies are a third line: a cross-site post carries no session at all.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from haoscar.commands.web_sessions import SessionInfo, csrf_matches
from haoscar.web.context import CTX

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
SESSION: web.RequestKey[SessionInfo] = web.RequestKey("haoscar_session", SessionInfo)
LOGIN_COOKIE = "__Host-haoscar-login"
LOGIN_COOKIE_PLAIN = "haoscar-login"  # the same over plain HTTP (tests on loopback only)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(web.HTTPForbidden):
    """A forged or foreign request: the page says why and that nothing was changed."""

    def __init__(self, why: str) -> None:
        super().__init__(text=f"{why}. Nothing was changed. Reload the page you came from and try again.")


def login_cookie_name(request: web.Request) -> str:
    return LOGIN_COOKIE if request.app[CTX].settings.secure_cookies else LOGIN_COOKIE_PLAIN


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> None:
    """The request comes from a page of this console: Origin (or, without it, Referer) is ours."""
    origin = request.headers.get("Origin")
    ours = own_origin(request)
    if origin is not None:
        if origin != ours:
            raise Refused("This request came from another site (its Origin is not this console's)")
        return
    referer = request.headers.get("Referer")
    if referer is None or not (referer == ours or referer.startswith(ours + "/")):
        raise Refused("This request did not say which page it came from (no Origin or Referer of this console)")


async def sent_token(request: web.Request) -> str | None:
    """The token the request carries: the header, else the form field (the form is read, within limits)."""
    header = request.headers.get(HEADER)
    if header is not None:
        return header
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    async with asyncio.timeout(request.app[CTX].settings.body_timeout_s):
        form = await request.post()  # cached: the handler reads the same form
    value = form.get(FIELD)
    return value if isinstance(value, str) else None


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    check_origin(request)
    token = await sent_token(request)
    if request.path == "/login":
        cookie = request.cookies.get(login_cookie_name(request))
        if not token or not cookie or not hmac.compare_digest(token.encode(), cookie.encode()):
            raise Refused("This login form was not the one this console gave you (its token is missing or wrong)")
        return await handler(request)
    info = request.get(SESSION)
    if info is None or not csrf_matches(info, token):
        raise Refused("This form's security token is missing or wrong")
    return await handler(request)
