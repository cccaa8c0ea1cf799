"""The console's aiohttp application: middlewares, the shared routes, and the page modules plugged in.

Middlewares, outermost first: error pages (no traceback ever reaches a browser: it is logged here), login required
(`auth`), CSRF (`csrf`). Security headers (the CSP below, nosniff, same-origin referrer, HSTS, no framing, no caching
of pages) are added to every response just before its headers go out (``on_response_prepare``), so error pages,
static files and event streams get them too. Limits: request bodies (``client_max_size``: 413), header lines and
count, and the keep-alive timeout that also closes a connection that sends nothing (``handler_args``).

A page module exposes ``setup(app)`` adding its routes (and ``render.add_nav`` links); it is plugged in by one
line in ``PAGE_MODULES``.
"""

from __future__ import annotations

import importlib
import logging
from http import HTTPStatus

from aiohttp import web

from haoscar.web import auth
from haoscar.web.context import CTX, WebContext
from haoscar.web.csrf import Handler, csrf_middleware
from haoscar.web.render import JINJA, NAV, TEMPLATES, jinja_environment, render_text

log = logging.getLogger(__name__)

STATIC = TEMPLATES.parent / "static"

# The page modules (haoscar.web.<name>), one line each; each has `setup(app: web.Application) -> None`.
PAGE_MODULES: tuple[str, ...] = (
    "dashboard",  # /dashboard, /nodes, /events, /dashboard/switchover
    "api",  # /api/... JSON
    "metrics",  # /metrics (bearer token)
    "wizard",  # /wizard, /wizard/STEP, /api/wizard/STEP/job
    "live",  # /live/macs, /live/installs (SSE)
    "audit",  # /audit
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it browsers send "Origin: null" with a form's post, which the CSRF origin check must
    # refuse. "same-origin" sends nothing to any other site, and the true Origin to this console.
    "Referrer-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# What an error page says beyond the status line; never a traceback or an internal detail.
EXPLAIN = {
    400: "The request could not be understood.",
    401: "Log in first.",
    403: "This request was refused.",
    404: "There is no such page.",
    405: "This page does not take that kind of request.",
    413: "What was sent is too large.",
    429: "Too many requests; wait a little and try again.",
    500: "Something went wrong on the server. It was logged; the change, if any, may not have been made.",
}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


def error_page(request: web.Request, status: int, message: str = "") -> web.Response:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    values = {"status": status, "reason": reason, "explain": EXPLAIN.get(status, ""), "message": message}
    text = render_text(request, "error.html", values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _message(exc: web.HTTPException) -> str:
    """The text a handler gave its HTTP error (``text=...``), unless it is aiohttp's default ``404: Not Found``."""
    text = exc.text or ""
    return "" if text.startswith(f"{exc.status}:") else text


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        page = (
            _plain(exc)
            if request.path.startswith(auth.API_PREFIXES)
            else error_page(request, exc.status, _message(exc))
        )
        for name, morsel in exc.cookies.items():  # cookies the refusal set
            page.cookies[name] = morsel
        return page
    except TimeoutError:
        return error_page(request, 408, "The request took too long to arrive.")
    except Exception:
        log.exception("error in %s %s", request.method, request.raw_path)  # raw: no decoded control characters
        return error_page(request, 500)


def _plain(exc: web.HTTPException) -> web.Response:
    return web.Response(status=exc.status, text=exc.text, content_type=exc.content_type or "text/plain")


async def _root(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard")


async def _healthz(_request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n", content_type="text/plain")


def create_app(ctx: WebContext) -> web.Application:
    settings = ctx.settings
    app = web.Application(
        middlewares=[error_middleware, auth.auth_middleware, csrf_middleware],
        client_max_size=settings.max_body,
        handler_args={
            "keepalive_timeout": settings.keepalive_s,
            "max_line_size": settings.max_field_size,
            "max_field_size": settings.max_field_size,
            "max_headers": settings.max_headers,
        },
    )
    app[CTX] = ctx
    app[NAV] = []
    app[JINJA] = jinja_environment()
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", _root)
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    auth.setup(app)
    for name in PAGE_MODULES:
        importlib.import_module(f"haoscar.web.{name}").setup(app)
    return app
