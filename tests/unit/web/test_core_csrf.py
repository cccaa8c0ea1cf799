"""CSRF: a post without this session's token, with another site's Origin, or saying nothing of where it came from,
gets 403 with a page that says so, and changes nothing; the audit log records every change made through a page."""

from __future__ import annotations

import json

from aiohttp import web
from webtest import ADMIN, Browser, run_console

from haoscar.commands.audit import AuditQuery, audit_list
from haoscar.commands.env import Env
from haoscar.commands.web_admins import AdminAdd, admin_add, admin_list
from haoscar.errors import UserError
from haoscar.web.context import WebContext
from haoscar.web.render import audited, problems


async def _add_admin(request: web.Request) -> web.Response:
    """A page that changes something, as a page module writes one: parse, call the command audited, answer."""
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    try:
        await audited(request, "admin.add", {"name": name, "password": password}, admin_add, AdminAdd(name, password))
    except UserError as exc:
        return web.json_response(problems(exc), status=400)
    return web.json_response({"added": name})


def _setup(app: web.Application) -> None:
    app.router.add_post("/test/admins", _add_admin)


def _admins(ctx: WebContext) -> list[str]:
    with Env(state_dir=ctx.state_dir) as env:
        return [row.name for row in admin_list(env)]


def test_forged_posts_are_refused_and_change_nothing(console_ctx: WebContext) -> None:
    good = "a fine long passphrase"

    async def scenario(b: Browser) -> None:
        await b.login()
        forged = [
            ({"csrf_token": ""}, b.origin, "security token is missing or wrong"),
            ({"csrf_token": "x" * 43}, b.origin, "security token is missing or wrong"),
            ({}, "https://evil.example", "came from another site"),
            ({}, "null", "came from another site"),
        ]
        for extra, origin, words in forged:
            response = await b.post("/test/admins", {"name": "mallory", "password": good, **extra}, origin=origin)
            assert response.status == 403, (extra, origin)
            assert words in b.text and "Nothing was changed" in b.text and "<title>403 Forbidden" in b.text
        # No Origin at all, and no Referer either: refused; a Referer of this console is enough.
        response = await b.client.post("/test/admins", data={"name": "mallory", "password": good, "csrf_token": b.csrf})
        assert response.status == 403 and "did not say which page it came from" in await response.text()
        assert _admins(console_ctx) == [ADMIN]
        response = await b.client.post(
            "/test/admins",
            data={"name": "carol", "password": good, "csrf_token": b.csrf},
            headers={"Referer": b.origin + "/wizard"},
        )
        assert response.status == 200
        # fetch() sends the token as a header.
        response = await b.client.post(
            "/test/admins",
            data={"name": "dave", "password": good},
            headers={"Origin": b.origin, "X-CSRF-Token": b.csrf},
        )
        assert response.status == 200
        # A forged logout does not log out.
        assert (await b.post("/logout", {"csrf_token": "nope"})).status == 403
        assert (await b.get("/x")).status == 404

    run_console(console_ctx, scenario, _setup)
    assert _admins(console_ctx) == [ADMIN, "carol", "dave"]


def test_a_login_form_from_elsewhere_is_refused(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        # A login posted without the token of the form this console served (login CSRF).
        response = await b.post("/login", {"name": ADMIN, "password": "correct horse battery"}, csrf=False)
        assert response.status == 403 and "login form was not the one this console gave you" in b.text
        assert (await b.get("/x")).status == 303

    run_console(console_ctx, scenario)


def test_every_change_through_a_page_is_audited_without_its_secrets(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        assert (await b.post("/test/admins", {"name": "erin", "password": "a fine long passphrase"})).status == 200
        response = await b.post("/test/admins", {"name": "<b>x</b>", "password": "short"})
        assert response.status == 400
        assert json.loads(b.text) == {
            "name": [
                "'<b>x</b>' is not a valid name: 1-32 characters, lower-case "
                "letters, digits, '_', '.' or '-', starting with a letter or '_'"
            ]
        }

    run_console(console_ctx, scenario, _setup)
    with Env(state_dir=console_ctx.state_dir) as env:
        rows = audit_list(env, AuditQuery(action="admin.add"))
        admin_add(env, AdminAdd("frank", "a fine long passphrase"))  # the CLI is not the console: not in its log
        assert len(audit_list(env, AuditQuery(action="admin.add"))) == 2
    assert [(r.admin, r.source, r.outcome, r.detail) for r in rows] == [
        (ADMIN, "127.0.0.1", "ok", {"name": "erin", "password": "***"}),
        (ADMIN, "127.0.0.1", "error", {"name": "<b>x</b>", "password": "***"}),
    ]
    assert "is not a valid name" in rows[1].message
