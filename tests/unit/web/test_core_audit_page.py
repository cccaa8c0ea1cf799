"""The audit log as a page: what was typed at the login form is shown escaped, filters work."""

from __future__ import annotations

from webtest import ADMIN, Browser, run_console

from haoscar.web.context import WebContext


def test_the_audit_page_escapes_what_came_from_the_network(console_ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login('<img src=x onerror="alert(1)">', "wrong password here")
        await b.login()
        response = await b.get("/audit")
        assert response.status == 200
        assert '<img src=x onerror="alert(1)">' not in b.text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in b.text
        assert b.text.count('<tr class="audit-failed">') == 1 and b.text.count('<tr class="audit-ok">') == 1
        assert '<a href="/audit" aria-current="page">Audit</a>' in b.text
        await b.get(f"/audit?admin={ADMIN}&action=login")
        assert b.text.count('<tr class="audit-') == 1 and "<td>login</td>" in b.text
        await b.get("/audit?action=nothing-like-this")
        assert "No entries." in b.text

    run_console(console_ctx, scenario)
