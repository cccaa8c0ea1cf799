"""The web console as the HA service ``web`` (docs/web.md#as-an-ha-service): it answers HTTPS on the public alias
only, with the certificate the cluster CA signed for the alias; after a crash of the active head the standby serves
it on the same URL with the same certificate (replicated with /etc/haoscar), and a browser that was logged in is
still logged in (the session is in the replicated database). The browser is a small HTTPS client in the lab's
public-side client host; the browser tests (tests/browser/) drive Chromium through the same service.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.cluster_lab import haoscar_on
from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.spec.models import ClusterSpec

pytestmark = pytest.mark.lab

PORT = 8443
PASSWORD = "a long lab passphrase"

# A browser, minus the rendering: keeps cookies in a JSON file, sends this console's Origin, logs in through the form.
CLIENT = r"""
import http.client, json, re, ssl, sys
from urllib.parse import urlencode
op, host, ca, jar = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
try:
    cookies = json.load(open(jar))
except FileNotFoundError:
    cookies = {}
def call(method, path, body=None):
    conn = http.client.HTTPSConnection(host, 8443, context=ctx, timeout=20)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Origin": f"https://{host}:8443"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    for name, value in answer.getheaders():
        if name.lower() == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key] = rest.split(";")[0]
    text = answer.read().decode()
    json.dump(cookies, open(jar, "w"))
    return answer.status, text, conn.sock.getpeercert(binary_form=True) if conn.sock else b""
if op == "login":
    _, page, _ = call("GET", "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"name": "admin", "password": sys.argv[5], "csrf_token": token, "next": "/"}
    status, _, _ = call("POST", "/login", urlencode(form))
    print(json.dumps({"status": status}))
else:
    status, text, _ = call("GET", sys.argv[5])
    print(json.dumps({"status": status, "logged_in": "Log out</button>" in text}))
"""


def _spec() -> ClusterSpec:
    raw = default_spec().model_dump(mode="json", exclude_none=True)
    raw["ha"]["services"] = [{"name": "web", "kind": "web", "port": PORT, "interval": 0.5}]
    raw["clients"] = []
    return ClusterSpec.model_validate(raw)


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("webha")
    with ha_lab(_spec(), unique_lab_name("web"), where, replication=True, replication_ack_timeout_s=1.0) as lab:
        yield lab


def _active(ha: HaLab) -> str:
    return next(h for h in (ha.primary, ha.standby) if (ha.status(h) or {}).get("state") == "active")


def _browser(ha: HaLab, work: Path, op: str, *args: str) -> dict[str, Any]:
    script = work / "client.py"
    script.write_text(CLIENT)
    ca = ha.lab.host_dir(ha.primary) / "etc/haoscar/tls/ca.crt"
    (work / "ca.crt").write_bytes(ca.read_bytes())
    argv = [sys.executable, str(script), op, ha.vip, str(work / "ca.crt"), str(work / "jar.json"), *args]
    done = ha.lab.exec("client", argv, check=False, timeout=60)
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _web(ha: HaLab, head: str) -> dict[str, Any]:
    status = ha.status(head) or {}
    return next((r for r in status.get("resources", []) if r["name"] == "web"), {})


def _in_sync(ha: HaLab, active: str) -> bool:
    """The standby may take over: nothing pending, and its copy confirmed current (the witness dropped its mark)."""
    repl = (ha.status(active, timeout=1.0) or {}).get("replication") or {}
    current = not repl.get("standby_stale") and bool(repl.get("confirmed_current"))
    return repl.get("files_pending") == 0 and current and bool(repl.get("db_connected"))


def _cert_hash(ha: HaLab, head: str) -> str:
    path = ha.lab.host_dir(head) / "etc/haoscar/web/console.crt"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def test_the_console_follows_the_alias_with_its_certificate_and_sessions(ha: HaLab, tmp_path: Path) -> None:
    first = _active(ha)
    assert wait_until(lambda: _web(ha, first).get("state") == "running", 60, 0.2), ha.logs(first)
    secret = ha.lab.host_dir(first) / "etc/haoscar/admin.password"
    secret.touch(mode=0o600)
    secret.write_text(PASSWORD + "\n")
    added = haoscar_on(ha.lab, first, "web", "admin", "add", "admin", "--password-file", "/etc/haoscar/admin.password")
    assert added.returncode == 0, added.stderr
    assert _browser(ha, tmp_path, "login", PASSWORD) == {"status": 303}
    assert _browser(ha, tmp_path, "get", "/nowhere") == {"status": 404, "logged_in": True}
    key = ha.lab.host_dir(first) / "etc/haoscar/web/console.key"
    assert key.stat().st_mode & 0o777 == 0o600
    other = ha.standby if first == ha.primary else ha.primary
    assert not ha.lab.exec(other, ["ss", "-Hltn", f"sport = :{PORT}"]).stdout.strip()  # not served on the standby

    # The standby holds the same certificate and the session before the crash (replication), then takes over.
    assert wait_until(lambda: _cert_hash(ha, other) == _cert_hash(ha, first) != "", 60, 0.2)
    assert wait_until(lambda: _in_sync(ha, first), 90, 0.1), ha.logs(first)
    ha.lab.crash(first)
    ha.wait_for(other, "active", 30)
    assert wait_until(lambda: _web(ha, other).get("state") == "running", 60, 0.2), ha.logs(other)
    assert wait_until(lambda: _browser(ha, tmp_path, "get", "/nowhere").get("status") == 404, 60, 0.3)
    assert _browser(ha, tmp_path, "get", "/nowhere") == {"status": 404, "logged_in": True}
    assert _cert_hash(ha, other) == _cert_hash(ha, first)  # not re-issued: the replicated one was good
    audit = haoscar_on(ha.lab, other, "web", "audit", "--json")
    assert [(r["admin"], r["action"], r["outcome"]) for r in json.loads(audit.stdout)] == [("admin", "login", "ok")]
