"""Fixtures of the console's unit tests; the helpers (Browser, run_console, make_ctx, add_admin) are in webtest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from webtest import add_admin, make_ctx

from haoscar.web.context import WebContext


@pytest.fixture
def console_state(tmp_path: Path) -> Path:
    """A state directory whose database has the administrator ADMIN with PASSWORD."""
    state = tmp_path / "state"
    add_admin(state)
    return state


@pytest.fixture
def console_ctx(console_state: Path) -> WebContext:
    return make_ctx(console_state)
