"""What every page module uses: render a template, call a command, record a change in the audit log.

A view parses the request into the command's request dataclass, calls it with :func:`call` (or :func:`audited` for
a change), and renders the report with :func:`page`, or the FieldError's problems next to their fields
(:func:`problems`). Jinja's autoescape is on: everything a template prints is escaped unless marked safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import jinja2
from aiohttp import web

from haoscar.commands.audit import AuditEntry, record
from haoscar.commands.env import Env
from haoscar.errors import FieldError, UserError
from haoscar.web.context import CTX

R = TypeVar("R")
T = TypeVar("T")

TEMPLATES = Path(__file__).parent / "templates"
USER: web.RequestKey[str] = web.RequestKey("haoscar_user", str)
CSRF: web.RequestKey[str] = web.RequestKey("haoscar_csrf", str)
NAV: web.AppKey[list[tuple[str, str]]] = web.AppKey("haoscar_nav", list)
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("haoscar_jinja", jinja2.Environment)


def jinja_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["field_label"] = field_label
    return env


def add_nav(app: web.Application, href: str, label: str) -> None:
    """A link in the navigation bar of every page (a page module's ``setup`` calls it)."""
    app[NAV].append((href, label))


def user_of(request: web.Request) -> str:
    """The logged-in administrator (the auth middleware lets no other request reach a page)."""
    user: str = request[USER]
    return user


def csrf_of(request: web.Request) -> str:
    """The session's CSRF token, for forms (hidden field ``csrf_token``) and fetch() (header X-CSRF-Token)."""
    token: str = request.get(CSRF, "")
    return token


def render_text(request: web.Request, template: str, values: Mapping[str, object]) -> str:
    jinja = request.app[JINJA]
    context: dict[str, object] = {
        "user": request.get(USER),
        "csrf_token": csrf_of(request),
        "nav": request.app[NAV],
        "path": request.path,
        **values,
    }
    return jinja.get_template(template).render(context)


def page(request: web.Request, template: str, /, *, status: int = 200, **values: object) -> web.Response:
    """``templates/<template>`` (which extends base.html) as an HTML response, with ``user``, ``csrf_token``,
    ``nav``, ``path`` and ``values``."""
    text = render_text(request, template, values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def field_label(field: str) -> str:
    """A field as a form names it in text (``start_ip`` -> ``Start IP``), for messages that refer to another one."""
    words = field.split("_")
    upper = {"ip", "mac", "ssh", "dhcp", "dns", "nfs", "id", "uid", "gid", "url", "csrf"}
    return " ".join(w.upper() if w in upper else w.capitalize() for w in words)


def problems(exc: UserError) -> dict[str, list[str]]:
    """field -> the details to show next to it (as the command wrote them, other fields named by their label);
    an error that names no field is under ""."""
    if not isinstance(exc, FieldError):
        return {"": [str(exc)]}
    out: dict[str, list[str]] = {}
    for problem in exc.problems:
        out.setdefault(problem.field, []).append(problem.text(field_label))
    if exc.summary:
        out.setdefault("", []).insert(0, exc.summary)
    return out


def remote_of(request: web.Request) -> str:
    return request.remote or "-"


def _run(make_env: Callable[[], Env], fn: Callable[[Env, R], T], req: R) -> T:
    env = make_env()
    try:
        return fn(env, req)
    finally:
        env.close()


async def call(request: web.Request, fn: Callable[[Env, R], T], req: R) -> T:
    """Run the synchronous command ``fn(env, req)`` in a worker thread with a fresh Env; a UserError propagates."""
    return await asyncio.to_thread(_run, request.app[CTX].make_env, fn, req)


async def audited(
    request: web.Request, action: str, detail: Mapping[str, object], fn: Callable[[Env, R], T], req: R
) -> T:
    """Like :func:`call`, and records an audit entry (admin, source address, action, detail, outcome) either way.
    Secrets in ``detail`` (keys naming a password, token, key or secret) are never written."""
    ctx = request.app[CTX]
    user = request.get(USER) or "-"
    try:
        result = await call(request, fn, req)
    except UserError as exc:
        entry = AuditEntry(user, remote_of(request), action, "error", detail, str(exc))
        await asyncio.to_thread(_run, ctx.make_env, record, entry)
        raise
    except Exception as exc:
        entry = AuditEntry(user, remote_of(request), action, "error", detail, f"internal error: {type(exc).__name__}")
        await asyncio.to_thread(_run, ctx.make_env, record, entry)
        raise
    await asyncio.to_thread(_run, ctx.make_env, record, AuditEntry(user, remote_of(request), action, "ok", detail))
    return result
