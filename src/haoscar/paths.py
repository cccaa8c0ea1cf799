"""Where haoscar keeps its state. Every daemon and command takes its state directory from a flag or the
environment, never from a fixed global path alone, so that lab hosts and tests can each have their own."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/haoscar")
STATE_DIR_ENV = "HAOSCAR_STATE_DIR"


def state_dir(explicit: Path | str | None = None) -> Path:
    """The state directory: an explicit choice, else $HAOSCAR_STATE_DIR, else /var/lib/haoscar."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env)
    return DEFAULT_STATE_DIR
