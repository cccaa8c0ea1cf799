"""Security headers on every response, error pages without tracebacks, the request size limits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from webtest import Browser, make_ctx, run_console

from haoscar.commands.env import Env
from haoscar.commands.web_admins import admin_list
from haoscar.web.app import CSP
from haoscar.web.context import WebContext


async def _boom(_request: web.Request) -> web.Response:
    raise RuntimeError("secret detail /etc/haoscar/keys/heartbeat.key")


async def _change(request: web.Request) -> web.Response:
    await request.post()
    raise AssertionError("a refused request must not reach its handler")


def _setup(app: web.Application) -> None:
    app.router.add_get("/test/boom", _boom)
    app.router.add_post("/test/change", _change)


def _assert_headers(response: object, page: bool) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'self';" in CSP and "frame-ancestors 'none'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["X-Frame-Options"] == "DENY"
    assert (headers.get("Cache-Control") == "no-store") is page


def test_every_response_carries_the_security_headers(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        _assert_headers(await b.get("/login"), page=True)
        _assert_headers(await b.get("/healthz"), page=True)
        _assert_headers(await b.get("/x"), page=True)  # the redirect to the login
        _assert_headers(await b.get("/static/app.css"), page=False)
        await b.login()
        _assert_headers(await b.get("/x"), page=True)  # a 404 page
        _assert_headers(await b.post("/logout", {"csrf_token": "forged"}), page=True)  # a 403 page

    run_console(console_ctx, scenario)


def test_error_pages_never_show_a_traceback(console_ctx: WebContext, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        response = await b.get("/test/boom")
        assert response.status == 500 and "<title>500 Internal Server Error" in b.text
        assert "Traceback" not in b.text and "secret detail" not in b.text and "RuntimeError" not in b.text
        assert "It was logged" in b.text
        response = await b.get("/no/such/page")
        assert response.status == 404 and "There is no such page." in b.text and 'href="/static/app.css"' in b.text
        response = await b.get("/logout")
        assert response.status == 405 and "does not take that kind of request" in b.text

    with caplog.at_level(logging.ERROR, logger="haoscar.web.app"):
        run_console(console_ctx, scenario, _setup)
    assert "secret detail" in caplog.text  # the server's log has it, the browser does not


def test_an_oversized_body_gets_413_and_reaches_no_handler(console_state: Path) -> None:
    ctx = make_ctx(console_state, max_body=4096)

    async def scenario(b: Browser) -> None:
        await b.login()
        response = await b.post("/test/change", {"name": "x" * 10_000})
        assert response.status == 413 and "What was sent is too large." in b.text
        assert "Maximum request body size 4096 exceeded" in b.text
        response = await b.post("/login", {"name": "x" * 10_000}, csrf=False)
        assert response.status == 413

    run_console(ctx, scenario, _setup)
    with Env(state_dir=console_state) as env:
        assert [row.name for row in admin_list(env)] == ["admin"]


def test_oversized_headers_are_refused(console_state: Path) -> None:
    ctx = make_ctx(console_state, max_field_size=1024, max_headers=20)

    async def scenario(b: Browser) -> None:
        response = await b.client.get("/login", headers={"X-Big": "y" * 4000})
        assert response.status == 400, response.status
        assert "Got more than 1024 bytes" in await response.text()
        many = {f"X-H{i}": "v" for i in range(40)}
        response = await b.client.get("/login", headers=many)
        assert response.status == 400, response.status
        assert (await b.get("/login")).status == 200  # the server lives on

    run_console(ctx, scenario)


def test_a_body_that_does_not_arrive_gets_408(console_state: Path) -> None:
    import asyncio

    ctx = make_ctx(console_state, body_timeout_s=1.0)

    async def scenario(b: Browser) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.client.server.port)
        head = (
            "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nname=adm"
        ).format(host=b.origin.split("//")[1], origin=b.origin)
        writer.write(head.encode())
        await writer.drain()  # ... and the other 992 bytes never come
        answer = await asyncio.wait_for(reader.read(65536), 60)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"The request took too long to arrive." in answer
        writer.close()

    run_console(ctx, scenario)
