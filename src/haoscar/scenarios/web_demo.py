"""The web console in the demo: ``haoscar demo --web`` keeps a console lab up for a person to click through, and
``haoscar demo`` (``make demo``) has a console act that prints the console's URL and credentials while the lab runs.

The lab is never connected to this machine's own interfaces, so the console is reached from the lab's client host:
``WebLab.browser_command`` is the exact command that opens it in Chromium there (run as root on this machine's
display), accepting exactly the heads' certificate keys.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from haoscar.lab.lab import Lab, down_lab
from haoscar.scenarios.ha_lab import start_ha
from haoscar.scenarios.web_lab import WebLab, console_on, console_spec, web_lab
from haoscar.spec.models import ClusterSpec

# Run in the client host: one GET without following redirects, the server's certificate checked against the cluster
# CA (the console's certificate names the alias: hostname checked too). Prints {"status", "location"} as JSON.
_FETCH = """
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cadata=sys.stdin.read())
class Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), Keep)
try:
    reply = opener.open(sys.argv[1], timeout=20)
    status, location = reply.status, reply.headers.get("Location")
except urllib.error.HTTPError as exc:
    status, location = exc.code, exc.headers.get("Location")
print(json.dumps({"status": status, "location": location}))
"""


def fetch_from(lab: Lab, host: str, url: str, ca_file: Path) -> dict[str, Any]:
    """GET ``url`` from lab host ``host`` (no redirect followed), TLS verified by the cluster CA ``ca_file``. The CA
    goes in on stdin: ``ca_file`` lies under the state directory, which a lab host does not see when it is one of
    the private trees (``make demo``'s /var/lib/haoscar)."""
    ca = ca_file.read_text()
    done = lab.exec(host, [sys.executable, "-c", _FETCH, url], check=False, timeout=40, input=ca)
    if done.returncode != 0:
        return {"status": None, "location": None, "error": done.stderr.strip()[-300:]}
    return dict(json.loads(done.stdout))


def connection_lines(weblab: WebLab) -> list[tuple[str, str]]:
    """What a person needs to open the console: (label, value) pairs, printed by the CLI."""
    return [
        ("console", weblab.url),
        ("admin", weblab.admin),
        ("password", weblab.password),
        ("reach it", f"the lab is not connected to this machine; a browser runs in lab host {weblab.client}:"),
        ("browser", weblab.browser_command()),
    ]


def hold_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM (both end the demo, which then takes its lab down)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_web_demo(state_dir: Path, name: str, show: Callable[[WebLab], None], hold: Callable[[], None]) -> None:
    """``haoscar demo --web``: the console lab up, ``show`` what to open, ``hold`` until the person is done; the lab
    always taken down."""
    down_lab(name, state_dir)  # a demo killed hard last time may have left its lab behind
    with web_lab(state_dir, name) as weblab:
        show(weblab)
        hold()


def run_console_act(lab: Lab, spec: ClusterSpec, show: Callable[[WebLab], None]) -> dict[str, Any]:
    """The console act of ``haoscar demo``: HA with the console on the running lab, an admin made, the URL and the
    credentials shown, and what the client host sees: the login page, and a page that sends it to the login."""
    ha = start_ha(lab, console_spec(spec, netboot=False), replication=False)
    try:
        weblab = console_on(ha)
        show(weblab)
        ca = lab.host_dir(ha.primary) / "etc/haoscar/tls/ca.crt"
        login = fetch_from(lab, weblab.client, f"{weblab.url}/login", ca)
        dashboard = fetch_from(lab, weblab.client, f"{weblab.url}/dashboard", ca)
        return {"url": weblab.url, "login": login, "dashboard": dashboard, "client": weblab.client, "head": ha.primary}
    finally:
        ha.stop()
