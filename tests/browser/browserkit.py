"""What the browser tests share besides fixtures: screenshots with the accessibility check, logging in, the
version of Debian's Chromium. Imported by name (``from browserkit import shoot``): pytest puts this directory on
``sys.path`` for the test modules beside it."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from haoscar.scenarios.web_lab import CHROMIUM, WebLab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
SERIOUS = ("serious", "critical")
_axe = Axe()
T = TypeVar("T")


def debian_chromium_version() -> str:
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    found = re.search(r"Chromium (\d+(?:\.\d+)+)", out)
    assert found, f"{CHROMIUM} --version said {out!r}"
    return found.group(1)


def artifact(request: pytest.FixtureRequest, name: str) -> Path:
    module = Path(str(request.node.path)).stem
    folder = ARTIFACTS / module
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"


def serious_violations(page: Page) -> list[str]:
    """axe-core's violations of impact serious or critical on the page as it is now, one line each."""
    found = _axe.run(page).response["violations"]
    lines = []
    for violation in found:
        if violation.get("impact") in SERIOUS:
            targets = ", ".join(str(node.get("target")) for node in violation["nodes"][:5])
            lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
    return lines


def shoot(page: Page, request: pytest.FixtureRequest, name: str) -> None:
    """A screenshot of the whole page as a test artifact, and the accessibility check (fails the test)."""
    page.screenshot(path=str(artifact(request, name)), full_page=True)
    problems = serious_violations(page)
    if problems:
        pytest.fail(f"axe-core on {page.url} ({name}): serious violations:\n" + "\n".join(problems))


def log_in(page: Page, weblab: WebLab, base: str | None = None) -> None:
    """Log in through the login form as the lab's admin; returns on the page the console sent the browser to."""
    page.goto(f"{base or weblab.url}/login")
    page.fill("#name", weblab.admin)
    page.fill("#password", weblab.password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a thread of its own: Playwright's sync API keeps an asyncio loop running in the test's thread,
    and pyroute2 (the lab's netlink: crash, taps) runs a loop of its own, which asyncio refuses there."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


@contextlib.contextmanager
def entered_off_loop(manager: AbstractContextManager[T]) -> Iterator[T]:
    """``with manager`` whose enter and exit run off the Playwright loop (a lab comes up and goes down by netlink)."""
    value = off_loop(manager.__enter__)
    try:
        yield value
    finally:
        off_loop(manager.__exit__, None, None, None)
