"""Smoke: log in, see a page, log out."""

from __future__ import annotations

from webtest import Browser, run_console

from haoscar.web.context import WebContext


def test_login_then_logout(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        first = await b.get("/dashboard")
        assert first.status == 303 and first.headers["Location"].startswith("/login?next=")
        done = await b.login(next_path="/x")
        assert done.status == 303 and done.headers["Location"] == "/x", b.text
        assert b.csrf
        page = await b.get("/x")
        assert page.status == 404 and "There is no such page" in b.text and "admin" in b.text
        out = await b.post("/logout")
        assert out.status == 303 and out.headers["Location"] == "/login?bye=1"
        again = await b.get("/x")
        assert again.status == 303

    run_console(console_ctx, scenario)
