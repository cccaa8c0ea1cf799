"""``/metrics`` (web/metrics.py): the bearer token, and the exposition parsed back with prometheus_client's own
parser against the fixture (a fake HA pair, head2's recorded events, the lab spec's nodes)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from fake_ha import FakeHa, head_status
from prometheus_client.parser import text_string_to_metric_families
from webtest import make_ctx

from haoscar.events import events_path
from haoscar.web import metrics
from haoscar.web.app import create_app
from haoscar.web.context import WebContext

EVENTS = Path(__file__).parents[1] / "commands" / "data" / "ha_events" / "crash_switchover_head2.jsonl"
T = TypeVar("T")


@pytest.fixture
def metrics_state(state: str) -> Path:
    path = Path(state)
    events_path(path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(EVENTS, events_path(path))
    return path


def run(ctx: WebContext, token_file: Path, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        app = create_app(ctx)
        app[metrics.TOKEN_FILE] = token_file
        async with TestServer(app, host="127.0.0.1") as server:
            client: TestClient[Any, Any] = TestClient(server)
            async with client:
                return await scenario(client)

    return asyncio.run(main())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_the_bearer_token(metrics_state: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "console" / "metrics-token"

    async def scenario(client: TestClient[Any, Any]) -> None:
        missing = await client.get("/metrics")
        assert missing.status == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status == 401
        basic = await client.get("/metrics", headers={"Authorization": "Basic YWRtaW46eA=="})
        assert basic.status == 401
        assert "haoscar_" not in await wrong.text()

    run(make_ctx(metrics_state), token_file, scenario)
    # made on the first start: root's (ours), mode 0600, a long random secret
    info = token_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    first = token_file.read_text().strip()
    assert len(first) >= 40
    run(make_ctx(metrics_state), token_file, lambda client: asyncio.sleep(0))
    assert token_file.read_text().strip() == first  # the next start keeps it


def test_a_token_file_others_can_read_disables_metrics(metrics_state: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "console" / "metrics-token"
    token_file.parent.mkdir(mode=0o700)
    token_file.write_text("x" * 43 + "\n")
    token_file.chmod(0o644)

    async def scenario(client: TestClient[Any, Any]) -> str:
        response = await client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 43})
        assert response.status == 401
        return await response.text()

    text = run(make_ctx(metrics_state), token_file, scenario)
    assert "readable by others" in text and "0644" in text


def test_metrics_parse_back_with_the_fixtures_names_labels_and_values(metrics_state: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "console" / "metrics-token"
    local = head_status("head2", "head1", "active", role="standby", received={"private": 1000, "heartbeat": 750})
    peer = head_status("head1", "head2", "standby")

    async def scenario(client: TestClient[Any, Any]) -> str:
        async with FakeHa(metrics_state, local, peer):
            token = token_file.read_text().strip()
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
            return await response.text()

    got = samples(run(make_ctx(metrics_state), token_file, scenario))
    assert got[("haoscar_web_up", ())] == 1.0
    assert got[("haoscar_ha_status_ok", ())] == 1.0
    assert got[("haoscar_ha_head_state", (("head", "head2"), ("state", "active")))] == 1.0
    assert got[("haoscar_ha_head_state", (("head", "head1"), ("state", "standby")))] == 1.0
    assert got[("haoscar_ha_head_reachable", (("head", "head1"),))] == 1.0
    assert got[("haoscar_ha_vip_held", (("head", "head2"),))] == 1.0
    assert got[("haoscar_ha_lease_valid", (("head", "head1"),))] == 0.0
    assert got[("haoscar_ha_lease_remaining_seconds", (("head", "head2"),))] == 2.5
    assert got[("haoscar_ha_replication_lag_seconds", (("head", "head2"),))] == 0.25
    assert got[("haoscar_ha_replication_files_pending", (("head", "head2"),))] == 3.0
    net = (("head", "head2"), ("network", "heartbeat"), ("peer", "head1"))
    assert got[("haoscar_ha_heartbeat_loss_ratio", net)] == 0.25
    assert got[("haoscar_ha_heartbeats_received_total", net)] == 750.0
    assert got[("haoscar_ha_heartbeat_up", net)] == 1.0
    assert got[("haoscar_ha_heartbeat_last_heard_seconds", net)] == 0.12
    assert got[("haoscar_ha_resource_state", (("head", "head2"), ("resource", "dhcp"), ("state", "running")))] == 1.0
    assert got[("haoscar_ha_resource_restarts_total", (("head", "head2"), ("resource", "dhcp")))] == 1.0
    # head2's store: the crash failover (0.854 s) and the forced one (3.403 s); no switchover gained on head2
    assert got[("haoscar_ha_failovers_total", (("kind", "failover"),))] == 2.0
    assert got[("haoscar_ha_failovers_total", (("kind", "switchover"),))] == 0.0
    assert got[("haoscar_ha_failover_duration_seconds_bucket", (("kind", "failover"), ("le", "0.5")))] == 0.0
    assert got[("haoscar_ha_failover_duration_seconds_bucket", (("kind", "failover"), ("le", "1.0")))] == 1.0
    assert got[("haoscar_ha_failover_duration_seconds_bucket", (("kind", "failover"), ("le", "5.0")))] == 2.0
    assert got[("haoscar_ha_failover_duration_seconds_count", (("kind", "failover"),))] == 2.0
    assert got[("haoscar_ha_failover_duration_seconds_sum", (("kind", "failover"),))] == pytest.approx(4.257)
    assert got[("haoscar_ha_last_failover_duration_seconds", ())] == pytest.approx(3.403)
    assert got[("haoscar_ha_takeover_refusals_total", (("kind", "replication.refused"),))] == 1.0
    # the lab spec's nodes: the primary head counts as installed (it is the server), the others are defined
    assert got[("haoscar_nodes", (("state", "defined"),))] == 3.0
    assert got[("haoscar_nodes", (("state", "installed"),))] == 1.0
    assert got[("haoscar_node_install_state", (("node", "node01"), ("role", "compute"), ("state", "defined")))] == 1.0
    assert got[("haoscar_nodes_ok", ())] == 1.0


def test_without_an_ha_daemon_the_scrape_still_answers(metrics_state: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "console" / "metrics-token"

    async def scenario(client: TestClient[Any, Any]) -> str:
        token = token_file.read_text().strip()
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
        return await response.text()

    got = samples(run(make_ctx(metrics_state), token_file, scenario))
    assert got[("haoscar_ha_status_ok", ())] == 0.0 and got[("haoscar_web_up", ())] == 1.0
    assert not any(name == "haoscar_ha_head_state" for name, _ in got)
    assert got[("haoscar_ha_failovers_total", (("kind", "failover"),))] == 2.0


def test_each_app_has_its_own_registry(metrics_state: Path, tmp_path: Path) -> None:
    first, second = create_app(make_ctx(metrics_state)), create_app(make_ctx(metrics_state))
    assert first[metrics._REGISTRY] is not second[metrics._REGISTRY]
    assert isinstance(aiohttp.__version__, str)
