"""The shared key's permissions and the fencing methods (with a fake fence agent and a fake lab socket)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.ha.fencing import fence
from haoscar.keys import generate_key, load_key
from haoscar.spec.models import Fencing


def test_keygen_writes_a_private_key_that_loads(tmp_path: Path) -> None:
    path = generate_key(tmp_path / "ha.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_key(path)) == 32


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = generate_key(tmp_path / "ha.key")
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="chmod 600"):
        load_key(path)


def test_a_missing_key_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="haoscar ha keygen"):
        load_key(tmp_path / "none.key")


FAKE_AGENT = """#!/bin/sh
stdin=$(cat)
echo "$stdin" >> "{out}"
# haoscar confirms an off with a status run: 2 means off (fence-agents' convention)
if echo "$stdin" | grep -q '^action=status$'; then echo "Status: OFF"; exit 2; fi
echo "$stdin" | grep -q '^action=off$' || exit 2
echo "$stdin" | grep -q '^ip=198.18.0.9$' || exit 3
echo "Success: Powered OFF"
exit {code}
"""


@pytest.mark.parametrize(("code", "ok"), [(0, True), (1, False)])
def test_fence_agents_get_key_value_lines_on_stdin(tmp_path: Path, code: int, ok: bool) -> None:
    agent = tmp_path / "fence_fake"
    out = tmp_path / "stdin.txt"
    agent.write_text(FAKE_AGENT.format(out=out, code=code))
    agent.chmod(0o755)
    config = Fencing(method="fence-agents", agent=str(agent), options={"ip": "198.18.0.9", "username": "admin"})
    result = asyncio.run(fence(config, "head1"))
    assert result.ok is ok
    lines = out.read_text().splitlines()
    assert "action=off" in lines and "plug=head1" in lines and "username=admin" in lines
    assert f"exit {code}" in result.message


def test_a_missing_fence_agent_is_a_failed_fence(tmp_path: Path) -> None:
    result = asyncio.run(fence(Fencing(method="fence-agents", agent="fence_no_such_agent"), "head1"))
    assert not result.ok and "not installed" in result.message


def test_lab_fencing_asks_the_lab_socket(tmp_path: Path) -> None:
    path = tmp_path / "fence.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got: list[dict[str, str]] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            got.append(json.loads(conn.makefile().readline()))
            conn.sendall(b'{"ok": true, "message": "lab host head1 crashed"}\n')

    thread = threading.Thread(target=serve)
    thread.start()
    result = asyncio.run(fence(Fencing(method="lab", options={"socket": str(path)}), "head1"))
    thread.join(5)
    server.close()
    assert result.ok and got == [{"action": "off", "host": "head1"}]


def test_no_fencing_never_succeeds() -> None:
    assert not asyncio.run(fence(Fencing(), "head1")).ok
