"""Login required everywhere, wrong passwords, the slowdown after failures, session expiry, logout, no open
redirect. Routes are taken from the app's router, so the pages other modules add are covered as they appear."""

from __future__ import annotations

import re
from pathlib import Path

from webtest import ADMIN, PASSWORD, Browser, FakeClock, make_ctx, run_console
from yarl import URL

from haoscar.commands.audit import AuditQuery, audit_list
from haoscar.commands.env import Env
from haoscar.commands.web_sessions import PURGE_GRACE_S, purge_expired
from haoscar.web.app import create_app
from haoscar.web.auth import is_public
from haoscar.web.context import WebContext

_PLACEHOLDER = re.compile(r"\{[^}]+\}")


def _routes(ctx: WebContext) -> list[tuple[str, str]]:
    """(method, path) of every route of the console, placeholders filled with a plausible word."""
    out = []
    for route in create_app(ctx).router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if path is None or route.method == "*":
            continue
        out.append((route.method, _PLACEHOLDER.sub("x", str(path))))
    return out


def test_every_route_but_the_public_ones_needs_a_login(console_ctx: WebContext) -> None:
    routes = _routes(console_ctx)
    assert ("POST", "/logout") in routes and ("GET", "/") in routes
    private = [(m, p) for m, p in routes if not is_public(p) and m != "HEAD"]

    async def scenario(b: Browser) -> None:
        for method, path in private:
            if method == "GET":
                response = await b.get(path)
                if path.startswith(("/api/", "/live/")):
                    assert response.status == 401, (path, response.status)
                else:
                    assert response.status == 303, (path, response.status)
                    assert response.headers["Location"].startswith("/login?next="), path
            else:
                response = await b.post(path, {"x": "y"}, csrf=False)
                assert response.status in (401, 403), (method, path, response.status)
                assert "log in first" in b.text, path

    run_console(console_ctx, scenario)


def test_a_wrong_password_is_said_next_to_the_field_and_recorded(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        for name, password in ((ADMIN, "not the password"), ("nobody", PASSWORD)):
            response = await b.login(name, password)
            assert response.status == 401
            assert re.search(r'aria-invalid="true" aria-describedby="password-error"', b.text)
            assert '<p class="error" id="password-error">wrong name or password</p>' in b.text
            assert 'role="alert"' in b.text
            assert (await b.get("/x")).status == 303  # still not logged in

    run_console(console_ctx, scenario)
    with Env(state_dir=console_ctx.state_dir) as env:
        rows = audit_list(env, AuditQuery(action="login"))
    assert [(r.admin, r.outcome, r.source) for r in rows] == [
        (ADMIN, "failed", "127.0.0.1"),
        ("nobody", "failed", "127.0.0.1"),
    ]


def test_failed_logins_slow_the_next_one_down_and_say_so(console_state: Path) -> None:
    clock = FakeClock()
    ctx = make_ctx(console_state, clock, login_free=2, login_base_s=30, login_cap_s=120)

    async def scenario(b: Browser) -> None:
        for _ in range(2):
            assert (await b.login(ADMIN, "wrong password here")).status == 401
        refused = await b.login()  # the right password, too early
        assert refused.status == 429
        assert "too many failed logins from this address (2 in the last 15 minutes): wait 30 s" in b.text
        assert (await b.get("/x")).status == 303
        clock.now += 31
        assert (await b.login()).status == 303
        assert (await b.get("/x")).status == 404  # logged in: the page does not exist

    run_console(ctx, scenario)


def test_an_expired_session_goes_to_the_login_and_back_to_the_page(console_state: Path) -> None:
    clock = FakeClock()
    ctx = make_ctx(console_state, clock, session_ttl_s=100, idle_ttl_s=40, session_touch_s=0)

    async def scenario(b: Browser) -> None:
        await b.login()
        for _ in range(3):  # idle: used every 30 s, it lives on ...
            clock.now += 30
            assert (await b.get("/somewhere?a=1")).status == 404
        clock.now += 30  # ... until its absolute end, 120 s after the login
        response = await b.get("/somewhere?a=1")
        assert response.status == 303
        location = URL(response.headers["Location"])
        assert location.path == "/login" and dict(location.query) == {"next": "/somewhere?a=1", "expired": "1"}
        await b.get(response.headers["Location"])
        assert "Your session expired. Log in again to continue." in b.text
        back = await b.login(next_path="/somewhere%3Fa%3D1")
        assert back.headers["Location"] == "/somewhere?a=1"
        clock.now += 41  # idle expiry
        response = await b.get("/somewhere")
        assert response.status == 303 and response.headers["Location"].endswith("&expired=1")

    run_console(ctx, scenario)


def test_logout_revokes_the_session_on_the_server(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        cookie = next(c for c in b.client.session.cookie_jar if c.key == "haoscar-session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        token = cookie.value
        assert (await b.post("/logout")).headers["Location"] == "/login?bye=1"
        # The old cookie, sent again (a copy an attacker kept), is dead.
        response = await b.client.get("/x", cookies={"haoscar-session": token}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login")

    run_console(console_ctx, scenario)
    with Env(state_dir=console_ctx.state_dir) as env:
        assert [(r.action, r.outcome) for r in audit_list(env, AuditQuery())] == [("login", "ok"), ("logout", "ok")]


def test_after_the_login_only_a_path_of_this_console_is_followed(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/login"):
            response = await b.login(next_path=evil.replace("/", "%2F").replace(":", "%3A"))
            assert response.headers["Location"] == "/", evil
            await b.post("/logout")

    run_console(console_ctx, scenario)


def test_the_login_form_escapes_what_was_typed(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login('"><script>alert(1)</script>', "wrong password here")
        assert "<script>alert(1)" not in b.text
        assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in b.text

    run_console(console_ctx, scenario)


def test_an_expired_session_keeps_saying_so_until_it_is_purged(console_state: Path) -> None:
    clock = FakeClock()
    ctx = make_ctx(console_state, clock, session_ttl_s=100)

    async def scenario(b: Browser) -> None:
        await b.login()
        clock.now += 101
        # A background poll first (the dashboard's), then the page: both hear "expired", not "log in first".
        poll = await b.get("/api/anything")
        assert poll.status == 401 and b.text == "your session expired; log in again"
        page = await b.get("/x")
        assert page.status == 303 and page.headers["Location"].endswith("&expired=1")
        assert (await b.post("/logout")).status == 403 and "your session expired" in b.text
        with Env(state_dir=console_state, clock=clock) as env:
            assert purge_expired(env, ctx.settings.session_ttl_s, ctx.settings.idle_ttl_s) == 0  # within the grace
            clock.now += PURGE_GRACE_S
            assert purge_expired(env, ctx.settings.session_ttl_s, ctx.settings.idle_ttl_s) == 1
        page = await b.get("/x")
        assert page.status == 303 and not page.headers["Location"].endswith("&expired=1")

    run_console(ctx, scenario)


def test_parallel_guesses_do_not_slip_past_the_slowdown(console_state: Path) -> None:
    import asyncio

    ctx = make_ctx(console_state, FakeClock(), login_free=2, login_base_s=30)

    async def scenario(b: Browser) -> list[int]:
        await b.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', b.text)
        assert token
        form = {"name": ADMIN, "password": "a wrong guess", "csrf_token": token.group(1)}

        async def guess() -> int:
            response = await b.client.post("/login", data=form, headers={"Origin": b.origin}, allow_redirects=False)
            return response.status

        return list(await asyncio.gather(*(guess() for _ in range(8))))

    statuses = run_console(ctx, scenario)
    assert sorted(statuses) == [401, 401, 429, 429, 429, 429, 429, 429]
    with Env(state_dir=console_state) as env:
        assert [r.outcome for r in audit_list(env, AuditQuery(action="login"))] == ["failed", "failed"]
