"""Browser tests: Playwright (sync API) drives Debian's Chromium against the web console of a lab cluster.

- The browser is ``/usr/bin/chromium``, never one Playwright downloads: ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`` is set
  and Playwright's own browser directory points at an empty temporary one, checked still empty after the launch.
- The console runs in a lab head, on the public alias; the lab is not connected to this machine's interfaces. So
  ``executable_path`` is a wrapper that enters the lab client host's network namespace and execs Chromium: the
  Playwright driver stays here and talks to the browser over a pipe (``--remote-debugging-pipe``).
- Chromium runs as root, so without its sandbox: Playwright passes ``--no-sandbox`` unless ``chromium_sandbox``.
- TLS: the browser accepts exactly the heads' certificate keys (``--ignore-certificate-errors-spki-list``), not
  every certificate error.
- Every page a test visits is screenshot into ``test-artifacts/browser/<module>/`` and checked by axe-core: no
  violation of impact serious or critical.

A test module defines a module-scoped ``weblab`` fixture (one lab per module, always taken down); the ``browser``
fixture here launches Chromium in that lab's client host, and ``page`` gives each test a fresh context (no cookies).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import debian_chromium_version
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from haoscar.scenarios.web_lab import WebLab

expect.set_options(timeout=15_000)  # what a page shows may take a few seconds on a busy 2-core machine


@pytest.fixture(scope="session")
def no_browsers_dir() -> Iterator[Path]:
    """Playwright's own browser directory: empty, and it must stay so (read by the driver when it starts)."""
    path = Path(tempfile.mkdtemp(prefix="haoscar-no-browsers-"))
    saved = {k: os.environ.get(k) for k in ("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "PLAYWRIGHT_BROWSERS_PATH")}
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(path)
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def playwright(no_browsers_dir: Path) -> Iterator[Playwright]:
    """Per module: while the driver runs, its asyncio loop counts as running in this thread, and the lab tests
    after these (pyroute2 in the main thread) must not find it so."""
    if os.geteuid() != 0:
        pytest.fail("browser tests need root (the console runs in a lab)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(
    playwright: Playwright, weblab: WebLab, no_browsers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    wrapper = weblab.browser_wrapper(tmp_path_factory.mktemp("chromium") / "chromium-in-lab")
    launched = playwright.chromium.launch(executable_path=str(wrapper), headless=True, args=weblab.browser_args())
    try:
        assert launched.version == debian_chromium_version(), "not Debian's chromium"
        assert not any(no_browsers_dir.iterdir()), f"Playwright put something in {no_browsers_dir}"
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(20_000)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
