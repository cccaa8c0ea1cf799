"""The head's resource group inside a lab head: dnsmasq hands a compute client its lease, the status API answers
over TLS on the head's own private and heartbeat addresses only (not the public one by default), a killed dnsmasq is
restarted in place, and after the stop nobody serves DHCP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from haoscar.lab import Lab
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

LAB_YAML = Path(__file__).parents[2] / "src" / "haoscar" / "data" / "lab.yaml"
NODE02_MAC = "52:54:00:00:01:02"

# What the HA daemon does with its resources, as a small program run inside the head: start the group, monitor
# it, report events on stdout as JSON lines, stop it when told to on stdin.
DRIVER = r"""
import asyncio, json, sys
from pathlib import Path
from haoscar.events import EventBus
from haoscar.ha.control import control_path, serve_control
from haoscar.ha.resources import ResourceGroup
from haoscar.spec.loader import load_spec

class Provider:
    def status(self): return {"node": "head1", "role": "active"}
    async def switchover(self): return None
    async def failback(self): return None
    async def takeover(self, force): return None

def say(**kw): print(json.dumps(kw), flush=True)

async def main():
    spec = load_spec(sys.argv[1])
    bus = EventBus("head1")
    bus.subscribe(lambda e: say(event=e.kind, message=e.message))
    provider = Provider()

    async def control(op, request):  # the API process asks "the daemon" here, as it asks the real one
        return provider.status() if op == "status" else {"ok": False, "error": op}

    await serve_control(control_path(Path("/var/lib/haoscar")), control)
    group = ResourceGroup.from_spec(spec, "head1", Path("/var/lib/haoscar"), bus, provider)
    group.on_escalate = lambda name: say(escalated=name)
    await group.start()
    group.start_monitoring()
    say(ready=[s.to_dict() for s in group.snapshot()])
    await asyncio.to_thread(sys.stdin.readline)
    say(stopped=await group.stop())

asyncio.run(main())
"""

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with deconfig / bound / renew / leasefail; print what the server offered.
[ "$1" = bound ] && echo "lease ip=$ip mask=$subnet server=$serverid lease=$lease"
exit 0
"""


def lab_spec(tmp_path: Path) -> Path:
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["clients"][0]["macs"] = {"node02": NODE02_MAC}  # as collected by OSCAR's Collect MAC Address
    raw["ha"]["services"] = [
        {"name": "dhcp", "kind": "dnsmasq", "interval": 0.2, "max_restarts": 3},
        {"name": "api", "kind": "status-api"},
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def read_until(proc: subprocess.Popen[str], key: str, timeout: float = 20.0) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        message = json.loads(line)
        seen.append(message)
        if key in message or message.get("event") == key:
            return dict(message)
    raise AssertionError(f"no {key} from the driver; got {seen}")


def dhcp_lease(lab: Lab, host: str, script: Path) -> str:
    out = lab.exec(
        host,
        ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", str(script)],
        check=False,
        timeout=30,
    )
    return out.stdout


def test_dhcp_and_status_api_served_by_the_head(make_lab: MakeLab, tmp_path: Path) -> None:
    spec_path = lab_spec(tmp_path)
    lab = make_lab(spec_path)
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    # node02 forgets its static address: from now on it lives on what DHCP gives it.
    lab.exec("node02", ["ip", "-4", "addr", "flush", "dev", "eth0"])
    # dnsmasq's config is rendered from the head's cluster database (issue 11): the spec applied there first
    lab.exec(
        "head1", [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", "spec", "apply", str(spec_path)]
    )

    driver = lab.popen(
        "head1",
        [sys.executable, "-c", DRIVER, str(spec_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = read_until(driver, "ready")["ready"]
        assert [(r["name"], r["state"]) for r in ready] == [("dhcp", "running"), ("api", "running")]

        assert "lease ip=198.18.0.102 mask=255.255.255.0 server=198.18.0.1 lease=43200" in dhcp_lease(
            lab, "node02", script
        )

        # The status API: open for reads over TLS (pinned to the cluster CA) from the private side, on the head's
        # private and heartbeat addresses only; the public side has nothing but the alias' services.
        ca = lab.host_dir("head1") / "etc/haoscar/tls/ca.crt"
        fetch = [
            "python3",
            "-c",
            "import ssl, sys, urllib.request as u; c = ssl.create_default_context(cafile=sys.argv[2]);"
            " print(u.urlopen(sys.argv[1], timeout=3, context=c).read().decode())",
        ]
        assert (
            json.loads(lab.exec("node01", [*fetch, "https://198.18.0.1:7406/status", str(ca)]).stdout)["role"]
            == "active"
        )
        refused = lab.exec("client", [*fetch, "https://198.19.0.11:7406/status", str(ca)], check=False)
        assert refused.returncode != 0 and "Connection refused" in refused.stderr
        listening = lab.exec("head1", ["ss", "-Hltn", "sport", "= :7406"]).stdout.split()
        local = sorted(word for word in listening if word.endswith(":7406"))
        assert local == ["198.18.0.1:7406", "198.18.1.1:7406"]
        token = (lab.host_dir("head1") / "etc/haoscar/api.token").stat()
        assert token.st_mode & 0o777 == 0o600

        # dnsmasq killed: restarted in place by the monitor, and serving again.
        dhcp_pid = ready[0]["pid"]
        lab.exec("head1", ["kill", "-9", str(dhcp_pid)])
        read_until(driver, "resource.restarted")
        assert "lease ip=198.18.0.102" in dhcp_lease(lab, "node02", script)

        assert driver.stdin is not None
        driver.stdin.write("stop\n")
        driver.stdin.flush()
        assert read_until(driver, "stopped")["stopped"] is True
        assert "lease ip=" not in dhcp_lease(lab, "node02", script)  # nobody serves DHCP any more
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(timeout=10)
