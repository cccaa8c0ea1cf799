"""Issue 10, finding 4: by default the public side has nothing of haoscar's but the alias' services. A host on the
public network finds neither the status nor the API on a head's public address or on the VIP, while a compute node
reads the status on the private side and the cluster answers on the VIP."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.spec import load_spec

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"
API_PORT, STATUS_PORT = 7406, 7409

PROBE = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("pub")
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["ha"]["services"] = [{"name": "api", "kind": "status-api"}]  # ha.api_public left at its default
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    with ha_lab(load_spec(path), unique_lab_name("pb"), where) as running:
        yield running


def probe(ha: HaLab, host: str, address: str, port: int) -> str:
    return ha.lab.exec(host, [sys.executable, "-c", PROBE, address, str(port)], timeout=30).stdout.strip()


def _api_running(ha: HaLab) -> bool:
    status = ha.status(ha.primary) or {}
    return any(r["name"] == "api" and r["state"] == "running" for r in status.get("resources", []))


def test_the_public_side_has_no_status_or_api_listener_by_default(ha: HaLab) -> None:
    assert wait_until(lambda: _api_running(ha), 10)
    heads = (ha.spec.heads.primary, ha.spec.heads.standby)
    for port in (API_PORT, STATUS_PORT):
        for address in [ha.vip, *(str(h.public_ip) for h in heads)]:
            assert probe(ha, "client", address, port) == "refused", (address, port)
    # The private side: a compute node reaches both heads' status and the active head's API.
    for head in heads:
        assert probe(ha, "node01", str(head.private_ip), STATUS_PORT) == "open"
    assert probe(ha, "node01", str(ha.spec.heads.primary.private_ip), API_PORT) == "open"
    # What the public side does get: the alias.
    assert pings(ha.lab, "client", ha.vip)
    listening = ha.lab.exec(ha.primary, ["ss", "-Hltn"]).stdout
    local = {line.split()[3] for line in listening.splitlines() if line.strip()}
    public = str(ha.spec.heads.primary.public_ip)
    assert not any(addr.startswith((f"{public}:", f"{ha.vip}:")) for addr in local), local
