"""Finding 6: the status anyone can read without a credential (plain-HTTP ``GET /status`` on the heads' cluster
addresses, and ``GET /status`` of the TLS API without the token) carries what a monitor needs and no file system
path, command, key id or error text quoting them; the full status stays with the token (and the control socket)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

from haoscar.ha.api import call_api, ensure_token, start_api, start_status_listener
from haoscar.ha.status_public import public_status, scrub
from haoscar.tlsca import ensure_node_cert, server_context

STATE_DIR = "/srv/cluster-state/haoscar"


def full_status() -> dict[str, Any]:
    """A head's status as the daemon builds it, with every place a path or a command can show up."""
    return {
        "node": "head1",
        "role": "primary",
        "state": "active",
        "state_for_s": 12.5,
        "state_detail": "active",
        "degraded": True,
        "warnings": [f"{STATE_DIR}/ha is on a full disk", "key file /etc/haoscar/keys/heartbeat.key is 0644"],
        "vip": {"address": "198.19.0.10", "interface": "eth1", "held": True},
        "peer": {
            "node": "head2",
            "state": "standby",
            "alive": True,
            "healthy": True,
            "holds_vip": False,
            "lease_remaining_s": 0.7,
            "networks": {"private": {"up": True, "last_heard_ms": 40, "received": 120, "source": "/dev/eth0"}},
            "status_urls": ["http://198.18.0.2:7409/status"],
        },
        "status_urls": ["http://198.18.0.1:7409/status"],
        "lease": {
            "witness": ["198.18.0.3"],
            "valid": True,
            "remaining_s": 0.6,
            "holder": "head1",
            "holder_remaining_s": 0.6,
            "witness_last_reply_ms": 30,
            "denials": 0,
            "probing": None,
        },
        "resources": [
            {
                "name": "dhcp",
                "kind": "dnsmasq",
                "state": "running",
                "restarts_in_window": 0,
                "total_restarts": 1,
                "last_error": f"dnsmasq --conf-file={STATE_DIR}/dnsmasq.conf exited 2",
                "pid": 4242,
            },
        ],
        "dropped": {"bad_mac": 0, "replay": 1},
        "keys": {"heartbeat": {"id": "4f1c", "file": "/etc/haoscar/keys/heartbeat.key"}},
        "incarnation": 1796296956,
        "fencing": {
            "method": "ssh",
            "last": {
                "ok": True,
                "method": "ssh",
                "target": "head2",
                "seconds": 0.4,
                "message": "ssh -i /root/.ssh/id_ed25519 root@head2 poweroff",
            },
        },
        "last_failover": {
            "kind": "failover",
            "cause": "peer-dead",
            "reason": f"peer silent; log in {STATE_DIR}/ha",
            "took_s": 0.9,
            "since_dead_s": 0.2,
            "wall": 1796296956.0,
        },
        "failback": "manual",
        "timings": {"dead": 0.6},
        "heartbeats_sent": 500,
        "replication": {
            "role": "source",
            "peer": "head2",
            "phase": "source",
            "lag_s": 0.1,
            "files_pending": 2,
            "bytes_pending": 4096,
            "last_full_pass": 1796296900.0,
            "db_lsn": 17,
            "db_connected": True,
            "standby_stale": False,
            "stale_reason": f"rsync of /home failed: {STATE_DIR}/x",
            "last_error": "rsync: write failed on /home/alice/big: No space left on device (28)",
            "trees": ["/home", "/etc/haoscar"],
            "forced": False,
        },
        "max_loop_lag_ms": 3.1,
        "loop_lag": {"samples": 10, "max_lag_ms": 3.1, "last_lag_ms": 0.2},
    }


class Head:
    def status(self) -> dict[str, Any]:
        return full_status()

    async def switchover(self) -> Any:
        raise AssertionError("no role change here")

    failback = takeover = switchover


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _no_paths(text: str) -> None:
    for leak in ("/etc", "/var", "/root", "/home", "/dev", STATE_DIR, "heartbeat.key", "--conf-file", "id_ed25519"):
        assert leak not in text, f"{leak} in the unauthenticated status: {text}"


def test_the_plain_http_status_has_the_monitor_view_and_no_paths() -> None:
    async def fetch() -> dict[str, Any]:
        port = _free_port()
        listener = await start_status_listener(["127.0.0.1"], port, Head())
        try:
            url = f"http://127.0.0.1:{port}/status"
            raw = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        finally:
            await listener.close()
        _no_paths(raw.decode())
        data: dict[str, Any] = json.loads(raw)
        return data

    seen = asyncio.run(fetch())
    assert (seen["node"], seen["role"], seen["state"], seen["degraded"]) == ("head1", "primary", "active", True)
    assert seen["peer"]["networks"] == {"private": {"up": True, "last_heard_ms": 40, "received": 120}}
    assert seen["lease"]["holder"] == "head1" and seen["lease"]["valid"]
    assert seen["resources"] == [
        {"name": "dhcp", "kind": "dnsmasq", "state": "running", "restarts_in_window": 0, "total_restarts": 1}
    ]
    assert seen["replication"]["lag_s"] == 0.1 and seen["replication"]["files_pending"] == 2
    assert "keys" not in seen and "last_error" not in seen["replication"] and "message" not in seen["fencing"]["last"]
    assert seen["warnings"] == ["<path> is on a full disk", "key file <path> is 0644"]
    assert seen["status_urls"] == ["http://198.18.0.1:7409/status"]  # URLs are addresses, not paths


def test_the_tls_api_gives_the_full_status_only_with_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "api.token"
    token = ensure_token(token_file)
    tls_dir = tmp_path / "tls"
    ctx = server_context(ensure_node_cert(tls_dir, "head1", ["127.0.0.1"]))
    port = _free_port()

    async def scenario() -> tuple[tuple[int, dict[str, Any]], ...]:
        runner = await start_api(["127.0.0.1"], port, token_file, Head(), tls=ctx)
        try:

            def get(tok: str | None) -> tuple[int, dict[str, Any]]:
                return call_api("127.0.0.1", port, "status", tok, 5.0, ca_file=tls_dir / "ca.crt")

            return (
                await asyncio.to_thread(get, None),
                await asyncio.to_thread(get, token),
                await asyncio.to_thread(get, "not-the-token"),
            )
        finally:
            await runner.close()

    anonymous, holder, wrong = asyncio.run(scenario())
    assert anonymous[0] == 200 and anonymous[1]["state"] == "active"
    _no_paths(json.dumps(anonymous[1]))
    assert holder == (200, full_status())
    assert wrong[0] == 403 and "keys" not in wrong[1]


def test_scrub_replaces_absolute_paths_but_keeps_urls_and_plain_words() -> None:
    assert scrub("cannot read /etc/haoscar/api.token (mode 0644)") == "cannot read <path> (mode 0644)"
    assert scrub("see http://198.18.0.1:7409/status and a/b") == "see http://198.18.0.1:7409/status and a/b"
    assert public_status({"node": "x", "secret_file": "/etc/x"}) == {"node": "x"}
