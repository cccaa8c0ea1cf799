"""The console of `haoscar demo --web` in Chromium: login required, sessions that expire, forged posts refused, the
dashboard's forms, a switchover from the button and a head crash seen live; then Ctrl-C takes the lab down.

One lab for the module: the one `haoscar demo --web --json` keeps up (the test reads the line it prints: URL, admin,
password, key pins, lab) - so the demo command is what is tested. The tests run in file order and share it: the
switchover and the crash come last.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import log_in, off_loop, shoot
from playwright.sync_api import Browser, Page, Playwright, expect
from playwright.sync_api import Error as PlaywrightError

from haoscar.commands.web_sessions import WRONG
from haoscar.lab.lab import down_lab
from haoscar.lab.names import NETNS_DIR, netns_prefix
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.scenarios.web_lab import WebLab, presented_certificate, spki_pin

pytestmark = [pytest.mark.browser, pytest.mark.lab]

PAGES = ("/", "/dashboard", "/nodes", "/events", "/audit", "/wizard", "/wizard/macs", "/dashboard/switchover")
SHORT_TTL_S = 10.0  # long enough to log in and open a page on a busy machine
SHORT_PORT = 8444
# How long a takeover may take here: the alias at once, then three services that may each take up to 30 s to be
# ready on a busy machine (web_lab.START_TIMEOUT_S) - a bound for waiting, not a measurement.
TAKEOVER_S = 120.0


def _leftovers(name: str) -> list[str]:
    return [n for n in os.listdir(NETNS_DIR) if n.startswith(netns_prefix(name))] if os.path.isdir(NETNS_DIR) else []


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return ""


class Demo:
    def __init__(self, proc: subprocess.Popen[str], name: str, state: Path, log: Path) -> None:
        self.proc, self.name, self.state, self.log = proc, name, state, log


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    state = tmp_path_factory.mktemp("webdemo")
    name = unique_lab_name("wb")
    log = state / "demo.log"
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(state), "demo", "--web", "--name", name, "--json"]
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    made = Demo(proc, name, state, log)
    try:
        yield made
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        off_loop(down_lab, name, state)  # whatever a failed demo left


@pytest.fixture(scope="module")
def weblab(demo: Demo) -> WebLab:
    line = _first_line(demo.proc, 300)
    assert line, f"haoscar demo --web printed nothing:\n{demo.log.read_text()[-3000:]}"
    shown = json.loads(line)
    assert shown["browser"].startswith(f"nsenter --net={NETNS_DIR}/{netns_prefix(demo.name)}client ")
    assert shown["url"] in shown["browser"]
    return WebLab.from_dict(shown)


def _fetch(page: Page, url: str, method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request made by the page itself (its cookies, its origin), without following redirects."""
    script = """async ([url, method, headers]) => {
        const r = await fetch(url, {method, headers, redirect: "manual", credentials: "same-origin"});
        return {status: r.status, type: r.type, text: r.type === "opaqueredirect" ? "" : await r.text()};
    }"""
    return dict(page.evaluate(script, [url, method, headers or {}]))


def test_the_browser_accepts_the_consoles_key_and_no_other(
    playwright: Playwright, weblab: WebLab, tmp_path: Path
) -> None:
    wrapper = weblab.browser_wrapper(tmp_path / "chromium-in-lab")
    other_key = "A" * 43 + "="  # a well-formed pin (base64 of 32 bytes) of no key the console has
    for args in ([], [f"--ignore-certificate-errors-spki-list={other_key}"]):
        browser = playwright.chromium.launch(executable_path=str(wrapper), args=args)
        try:
            with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
                browser.new_page().goto(weblab.url + "/login")
        finally:
            browser.close()


def test_every_page_needs_a_login(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    for path in PAGES:
        page.goto(weblab.url + path)
        assert page.url.startswith(f"{weblab.url}/login?next="), f"{path} was served without a login: {page.url}"
        expect(page.locator("#name")).to_be_visible()
    shoot(page, request, "login")
    # the JSON API and the live streams answer 401, they do not redirect
    for path in ("/api/dashboard", "/live/macs"):
        assert _fetch(page, weblab.url + path)["status"] == 401, path


def test_a_wrong_password_is_said_next_to_the_field(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    page.goto(weblab.url + "/login")
    page.fill("#name", weblab.admin)
    page.fill("#password", weblab.password + "x")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator("#password-error")).to_have_text(WRONG)
    expect(page.locator("#password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#password")).to_have_attribute("aria-describedby", "password-error")
    expect(page.locator("#error-summary")).to_have_attribute("role", "alert")
    shoot(page, request, "login-wrong-password")


def test_login_with_the_keyboard_alone(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    page.goto(weblab.url + "/dashboard")
    for _ in range(10):  # the skip link comes first, then the form's fields
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "name":
            break
    assert page.evaluate("document.activeElement.id") == "name", "Tab never reached the name field"
    page.keyboard.type(weblab.admin)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(weblab.password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{weblab.url}/dashboard")  # back where the browser wanted to go
    expect(page.locator("header .who")).to_have_text(weblab.admin)
    shoot(page, request, "dashboard")


def test_every_page_shown_and_accessible(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    log_in(page, weblab)
    for path, heading in (("/events", "events"), ("/audit", "Audit log"), ("/wizard", "wizard")):
        page.goto(weblab.url + path)
        expect(page.locator("main h1")).to_contain_text(heading, ignore_case=True)
        shoot(page, request, path.strip("/"))
        if path == "/audit":
            expect(page.locator("#audit-body tr.audit-ok").first).to_contain_text("login")  # this very login


def test_the_nodes_filter_says_what_the_cli_says(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    log_in(page, weblab)
    page.goto(weblab.url + "/nodes")
    expect(page.locator("#nodes tbody tr")).to_have_count(4)  # both heads, node01 and node02 of the spec
    shoot(page, request, "nodes")
    page.fill("#nodeset", "@compute")
    page.click("#nodes-filter-button")
    expect(page.locator("#nodes tbody tr")).to_have_count(2)
    expect(page.locator("#node-node01")).to_be_visible()
    expect(page.locator("#node-node02")).to_be_visible()
    bad = "node[01-"
    cli = weblab.haoscar("node", "list", bad)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    page.fill("#nodeset", bad)
    page.click("#nodes-filter-button")
    shown = page.locator("#nodeset-error").inner_text().strip()
    assert shown and shown in cli.stderr, f"page: {shown!r}; CLI: {cli.stderr!r}"
    expect(page.locator("#nodeset")).to_have_attribute("aria-invalid", "true")
    shoot(page, request, "nodes-bad-filter")


def _audit(weblab: WebLab, action: str) -> list[dict[str, Any]]:
    done = weblab.haoscar("web", "audit", "--action", action, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return list(json.loads(done.stdout))


def test_a_forged_switchover_is_refused(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    active = weblab.active()
    log_in(page, weblab)
    # 1. from another site: a page of the client host itself posts to the console (the session cookie is SameSite)
    attacker = weblab.lab.host(weblab.client).address_on("public")
    site = weblab.lab.host_dir(weblab.client) / "srv" / "forge"
    site.mkdir(parents=True, exist_ok=True)
    (site / "index.html").write_text(
        f'<!doctype html><title>win a prize</title><form method="post" action="{weblab.url}/dashboard/switchover">'
        '<input type="hidden" name="confirm" value="switchover"><input type="hidden" name="csrf_token" value="x">'
        '<button id="prize">Claim</button></form>'
    )
    server = weblab.lab.popen(
        weblab.client,
        [sys.executable, "-m", "http.server", "--bind", str(attacker), "--directory", "/srv/forge", "8000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            try:
                page.goto(f"http://{attacker}:8000/")
                break
            except Exception:
                time.sleep(0.2)
        page.click("#prize")
        expect(page.locator("main")).to_contain_text("Nothing was changed")
        assert "403" in page.title()
        shoot(page, request, "forged-cross-site")
    finally:
        server.terminate()
        server.wait(10)
    # 2. from the console's own page with a wrong token
    page.goto(weblab.url + "/dashboard/switchover")
    token = page.locator("form.confirm input[name=csrf_token]")
    token.evaluate("input => { input.value = 'not-the-token'; }")
    assert token.input_value() == "not-the-token"
    page.click("#switchover-confirm")
    expect(page.locator("main")).to_contain_text("Nothing was changed")
    assert "403" in page.title()
    # 3. a script of the page posting without any token
    page.goto(weblab.url + "/dashboard")
    reply = _fetch(
        page, weblab.url + "/dashboard/switchover", "POST", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert reply["status"] == 403, reply
    assert weblab.active() == active, "a forged request moved the role"
    assert _audit(weblab, "ha.switchover") == [], "a forged switchover reached the audit log"


def test_a_session_expires(
    playwright: Playwright, weblab: WebLab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A second console on the active head's own public address, with a 10 s session lifetime."""
    head = weblab.active()
    own = str(weblab.lab.host(head).address_on("public"))
    argv = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", "web", "serve", "--bind", own,
            "--port", str(SHORT_PORT), "--console-dir", "/etc/haoscar/web-short",
            "--session-ttl", str(SHORT_TTL_S), "--idle-ttl", str(SHORT_TTL_S)]  # fmt: skip
    with open(tmp_path / "short.log", "w") as out:
        short = weblab.lab.popen(head, argv, stdout=out, stderr=subprocess.STDOUT)
    browser: Browser | None = None
    try:
        base = f"https://{own}:{SHORT_PORT}"
        pin: str | None = None
        for _ in range(100):
            try:
                pin = spki_pin(presented_certificate(weblab.lab, weblab.client, own, SHORT_PORT))
                break
            except Exception:
                assert short.poll() is None, (tmp_path / "short.log").read_text()
                time.sleep(0.3)
        assert pin is not None, (tmp_path / "short.log").read_text()
        wrapper = weblab.browser_wrapper(tmp_path / "chromium-in-lab")
        browser = playwright.chromium.launch(
            executable_path=str(wrapper), args=[f"--ignore-certificate-errors-spki-list={pin}"]
        )
        page = browser.new_page()
        log_in(page, weblab, base)
        page.goto(base + "/nodes")  # a page without live polling: the next request is the one below
        assert page.url == base + "/nodes"
        time.sleep(SHORT_TTL_S + 1.0)
        page.goto(base + "/events")
        assert page.url.startswith(f"{base}/login?next="), page.url
        assert "expired=1" in page.url
        expect(page.locator(".notice")).to_contain_text("Your session expired")
        shoot(page, request, "session-expired")
    finally:
        if browser is not None:
            browser.close()
        short.terminate()
        short.wait(20)


def test_a_switchover_from_the_button(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    before = weblab.active()
    after = weblab.other(before)
    log_in(page, weblab)
    page.goto(weblab.url + "/dashboard")
    expect(page.locator("#active-head")).to_have_text(before)
    page.click("#switchover-button")
    page.wait_for_url(re.compile(r"/dashboard/switchover\??$"))  # a GET form: the confirmation page
    expect(page.locator("#switchover-plan")).to_contain_text(after)
    shoot(page, request, "switchover-confirm")
    assert weblab.active() == before, "asking for the confirmation moved the role"
    page.click("#switchover-confirm")
    expect(page.locator("#switchover-outcome")).to_be_visible()
    shoot(page, request, "switchover-done")
    deadline = time.monotonic() + TAKEOVER_S
    while time.monotonic() < deadline and _active_or_none(weblab) != after:
        time.sleep(0.2)
    assert _active_or_none(weblab) == after
    page.goto(weblab.url + "/dashboard")  # the session followed the alias (replicated database)
    expect(page.locator("#active-head")).to_have_text(after, timeout=30_000)
    expect(page.locator("#last-failover-kind")).to_contain_text("switchover")
    expect(page.locator("#last-failover-node")).to_have_text(after)
    assert [e["outcome"] for e in _audit(weblab, "ha.switchover")] == ["ok"]


def _active_or_none(weblab: WebLab) -> str | None:
    try:
        return weblab.active()
    except Exception:
        return None


def test_a_head_crash_is_seen_live(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    active = weblab.active()
    survivor = weblab.other(active)
    log_in(page, weblab)
    page.goto(weblab.url + "/dashboard")
    expect(page.locator("#active-head")).to_have_text(active)
    before = page.locator("#last-failover-at").inner_text()
    # the standby may take over only with a current copy (after the switchover it was resynced from the new active)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not weblab.in_sync(active):
        time.sleep(0.3)
    assert weblab.in_sync(active), weblab.status(active)
    off_loop(weblab.lab.crash, active)
    # no reload: the page's script follows the console to the surviving head
    expect(page.locator("#active-head")).to_have_text(survivor, timeout=TAKEOVER_S * 1000)
    expect(page.locator("#last-failover-node")).to_have_text(survivor, timeout=30_000)
    expect(page.locator("#last-failover-at")).not_to_have_text(before)
    took = page.locator("#last-failover-ms").inner_text().strip()
    assert took.isdigit() and int(took) > 0, f"failover time shown: {took!r}"
    shoot(page, request, "dashboard-after-crash")


def test_ctrl_c_takes_the_demo_lab_down(demo: Demo, weblab: WebLab) -> None:
    assert demo.proc.poll() is None, demo.log.read_text()[-3000:]
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(120) == 0, demo.log.read_text()[-3000:]
    assert _leftovers(demo.name) == []
