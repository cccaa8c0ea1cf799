"""The daemon's control socket works under a state directory of any length (``sun_path`` holds 108 bytes)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from haoscar.errors import UserError
from haoscar.ha.control import control_path, request, serve_control


def _long_state_dir(tmp_path: Path) -> Path:
    state_dir = tmp_path / ("a-rather-long-directory-name-" * 3) / ("and-another-one-" * 3) / "state"
    assert len(str(control_path(state_dir))) > 108
    return state_dir


async def _handler(op: str, req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "op": op, "echo": req.get("x")}


def test_status_round_trip_under_a_state_dir_longer_than_108_bytes(tmp_path: Path) -> None:
    path = control_path(_long_state_dir(tmp_path))

    async def main() -> dict[str, Any]:
        server = await serve_control(path, _handler)
        try:
            return await asyncio.to_thread(request, path, "status", 5.0, x=42)
        finally:
            server.close()
            await server.wait_closed()

    reply = asyncio.run(main())
    assert reply == {"ok": True, "op": "status", "echo": 42}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the socket file sits at its real, long path


def test_no_daemon_under_a_long_state_dir_is_a_user_error_naming_the_path(tmp_path: Path) -> None:
    path = control_path(_long_state_dir(tmp_path))
    with pytest.raises(UserError, match="no HA daemon answers on"):
        request(path, "status", 1.0)
    path.parent.mkdir(parents=True)
    with pytest.raises(UserError, match=str(path)):
        request(path, "status", 1.0)
