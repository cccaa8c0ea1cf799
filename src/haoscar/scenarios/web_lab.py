"""A lab cluster with the web console running, for the browser tests (tests/browser/) and ``haoscar demo --web``.

Both heads run the HA daemon with replication (the console's admins, sessions and audit records are in the
replicated database, so they follow a failover), the netboot services on the private alias (``dnsmasq`` rendered
from the database, the boot server) and the console as the HA service ``web`` on the public alias. An admin is
created on the active head with the CLI, as a person would.

The lab is never connected to this machine's own interfaces, so a browser must run inside the lab's public-side
client host: only its *network* namespace is entered (``nsenter --net``), the browser's files and display stay the
machine's. The console's certificate is a head's, signed by the cluster CA; the browser is told to accept exactly
the heads' keys (Chromium's ``--ignore-certificate-errors-spki-list``), not every certificate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.ha.control import control_path, request
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.installer_kernel import META_PACKAGE, fetch_kernel, resolve_package
from haoscar.scenarios.cluster_lab import HOST_SPEC, HOST_STATE_DIR, haoscar_on
from haoscar.scenarios.ha_lab import HaLab, ha_lab
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.tinyimage import build_tiny_tree
from haoscar.spec import load_spec
from haoscar.spec.models import ClusterSpec

PRIVATE_ALIAS = "198.18.0.3"
WEB_PORT = 8443
ADMIN = "admin"
CHROMIUM = "/usr/bin/chromium"
# How long a service may take to be ready: python daemons start in seconds on a busy 2-core machine (the default
# 5 s made a switchover's takeover fail there: the boot server was not listening yet).
START_TIMEOUT_S = 30.0
CONSOLE_DIR = "/etc/haoscar/web"  # where the console keeps its certificate (web/context.py DEFAULT_CONSOLE_DIR)


def console_spec(base: ClusterSpec | None = None, *, clients: bool = True, netboot: bool = True) -> ClusterSpec:
    """The demo lab's spec with the console on the public alias as the HA service ``web``; with ``netboot`` also a
    private alias and the netboot services (dnsmasq rendered from the database, the boot server) before it.
    ``clients=False`` leaves no compute clients (the wizard defines them: an empty cluster)."""
    raw = (base or default_spec()).model_dump(mode="json", exclude_none=True)
    services: list[dict[str, Any]] = []
    if netboot:
        for head in raw["heads"].values():
            head["private_alias_ip"] = PRIVATE_ALIAS
        services += [
            {"name": "dhcp", "kind": "dnsmasq", "interval": 0.5, "timeout": START_TIMEOUT_S},
            {"name": "boot", "kind": "bootserver", "interval": 0.5, "timeout": START_TIMEOUT_S},
        ]
    services.append({"name": "web", "kind": "web", "port": WEB_PORT, "interval": 0.5, "timeout": START_TIMEOUT_S})
    raw["ha"]["services"] = services
    if not clients:
        raw["clients"] = []
    return ClusterSpec.model_validate(raw)


def spki_pin(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate: what ``--ignore-certificate-errors-spki-list`` takes."""
    public = _openssl(["x509", "-pubkey", "-noout"], cert_pem)
    der = _openssl(["pkey", "-pubin", "-outform", "der"], public)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _openssl(args: list[str], data: bytes) -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False, timeout=30)
    if done.returncode != 0 or not done.stdout:
        raise UserError(f"cannot compute the key pin of the console's certificate: {done.stderr.decode()[-300:]}")
    return done.stdout


@dataclass
class WebLab:
    """A running lab with the console: where it is, who may log in, and how a browser reaches it. Rebuilt from
    ``as_dict()`` in another process (``haoscar demo --web --json``) with ``from_dict``."""

    lab: Lab
    spec: ClusterSpec
    url: str
    admin: str
    password: str
    pins: tuple[str, ...]
    client: str

    @property
    def lab_name(self) -> str:
        return self.lab.name

    @property
    def heads(self) -> tuple[str, str]:
        return self.spec.heads.primary.hostname, self.spec.heads.standby.hostname

    def status(self, head: str, timeout: float = 2.0) -> dict[str, Any] | None:
        """The HA daemon's status on ``head`` (its control socket), None when it does not answer."""
        path = control_path(self.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/"))
        try:
            return request(path, "status", timeout=timeout)
        except (UserError, OSError, ValueError):
            return None

    def active(self) -> str:
        """The head whose daemon says it is active (the one serving the console)."""
        for head in self.heads:
            if self.lab.host(head).state == "running":
                status = self.status(head, timeout=1.0)
                if status is not None and status.get("state") == "active":
                    return head
        raise UserError(f"no head of lab {self.lab_name} is active")

    def in_sync(self, active: str) -> bool:
        """The standby may take over from ``active``: replication has nothing pending and the standby was told its
        copy is current (as ``demo_cluster.in_sync`` reads it)."""
        repl = (self.status(active, timeout=1.0) or {}).get("replication") or {}
        current = not repl.get("standby_stale") and bool(repl.get("confirmed_current"))
        return repl.get("files_pending") == 0 and current and bool(repl.get("db_connected"))

    def other(self, head: str) -> str:
        first, second = self.heads
        return second if head == first else first

    def haoscar(self, *argv: str, head: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[Any]:
        """A haoscar command run on ``head`` (the active one by default), as an administrator logged in there."""
        return haoscar_on(self.lab, head or self.active(), *argv, timeout=timeout)

    def browser_args(self) -> list[str]:
        return [f"--ignore-certificate-errors-spki-list={','.join(self.pins)}"]

    def browser_wrapper(self, path: Path) -> Path:
        """A script that runs Chromium with its network in the client host: Playwright's ``executable_path``
        (it talks to the browser over a pipe, so only the browser's network changes)."""
        netns = self.lab.netns_path(self.client)
        path.write_text(f'#!/bin/sh\nexec nsenter --net={shlex.quote(netns)} -- {CHROMIUM} "$@"\n')
        path.chmod(0o755)
        return path

    def browser_command(self) -> str:
        """The command a person runs (as root, on this machine's display) to open the console."""
        netns = self.lab.netns_path(self.client)
        profile = f"/tmp/haoscar-web-{self.lab_name}-profile"
        argv = ["nsenter", f"--net={netns}", CHROMIUM, "--no-sandbox", f"--user-data-dir={profile}",
                *self.browser_args(), self.url]  # fmt: skip
        return shlex.join(argv)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "admin": self.admin, "password": self.password, "pins": list(self.pins),
            "client": self.client, "lab": self.lab_name, "state_dir": str(self.lab.state_dir),
            "browser": self.browser_command(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebLab:
        lab = Lab.open(str(data["lab"]), Path(str(data["state_dir"])))
        primary = next(h.name for h in lab.hosts.values() if h.role == "primary")
        spec = load_spec(lab.host_dir(primary) / HOST_SPEC.lstrip("/"))
        pins = tuple(str(p) for p in data["pins"])
        return cls(lab, spec, str(data["url"]), str(data["admin"]), str(data["password"]), pins, str(data["client"]))


def _crt_pins(lab: Lab, heads: tuple[str, ...], directory: str) -> list[str]:
    found = []
    for head in heads:
        for crt in sorted((lab.host_dir(head) / directory.lstrip("/")).glob("*.crt")):
            if crt.name != "ca.crt":
                found.append(spki_pin(crt.read_bytes()))
    return found


def presented_certificate(lab: Lab, client: str, address: str, port: int) -> bytes:
    """The certificate the server at ``address:port`` presents, as the client host sees it (PEM)."""
    probe = f"openssl s_client -connect {address}:{port} </dev/null 2>/dev/null | openssl x509"
    done = lab.exec(client, ["sh", "-c", probe], check=False, timeout=30)
    if done.returncode != 0 or "BEGIN CERTIFICATE" not in done.stdout:
        raise UserError(f"no certificate from {address}:{port}: {done.stderr.strip()[-300:]}")
    return str(done.stdout).encode()


def console_pins(lab: Lab, spec: ClusterSpec, client: str, port: int = WEB_PORT) -> tuple[str, ...]:
    """The keys the browser accepts: the certificate the console presents now, and the console certificates of both
    heads (the console moves with the alias, so either head may answer after a failover)."""
    heads = (spec.heads.primary.hostname, spec.heads.standby.hostname)
    alias = str(spec.heads.primary.alias_ip)
    pins = [spki_pin(presented_certificate(lab, client, alias, port))]
    pins += _crt_pins(lab, heads, CONSOLE_DIR)
    return tuple(dict.fromkeys(pins))


def create_admin(lab: Lab, head: str, name: str = ADMIN) -> str:
    """An admin made with the CLI on ``head``; returns its new random password."""
    password = secrets.token_urlsafe(12)
    secret = lab.host_dir(head) / "etc/haoscar" / f"web-admin-{name}.password"
    secret.touch(mode=0o600)
    secret.write_text(password + "\n")
    try:
        done = haoscar_on(lab, head, "web", "admin", "add", name, "--password-file", f"/etc/haoscar/{secret.name}")
    finally:
        secret.unlink()
    if done.returncode != 0:
        raise UserError(f"web admin add on {head} failed: {done.stdout}{done.stderr}")
    return password


def wait_for_console(lab: Lab, client: str, address: str, port: int, timeout: float = 60.0) -> None:
    """Until the console answers TLS on ``address`` (checked from the client host, where browsers run)."""
    probe = f"openssl s_client -connect {address}:{port} -brief </dev/null >/dev/null 2>&1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.exec(client, ["sh", "-c", probe], check=False, timeout=20).returncode == 0:
            return
        time.sleep(0.3)
    raise UserError(f"the web console did not answer on {address}:{port} within {timeout:g} s")


def client_host(spec: ClusterSpec) -> str:
    if spec.lab.client is None:
        raise UserError("the console lab needs a lab.client host (the browser runs there)")
    return spec.lab.client.hostname


def console_on(ha: HaLab) -> WebLab:
    """The console of a running HA session (the service ``web``): answering, an admin made on the active head."""
    client = client_host(ha.spec)
    alias = str(ha.spec.heads.primary.alias_ip)
    active = next(h for h in (ha.primary, ha.standby) if (ha.status(h) or {}).get("state") == "active")
    password = create_admin(ha.lab, active)
    wait_for_console(ha.lab, client, alias, WEB_PORT)
    pins = console_pins(ha.lab, ha.spec, client)
    return WebLab(ha.lab, ha.spec, f"https://{alias}:{WEB_PORT}", ADMIN, password, pins, client)


@contextlib.contextmanager
def web_lab(state_dir: Path, name: str, spec: ClusterSpec | None = None, **start: Any) -> Iterator[WebLab]:
    """The lab up with HA, replication and the console; an admin created; always taken down."""
    with ha_lab(spec or console_spec(), name, state_dir, replication=True, **start) as ha:
        yield console_on(ha)


TEST_CACHE = Path("/var/tmp/haoscar-test-cache/installer")  # the installer's kernel, shared with the lab VM tests
TINY_TREE = "/srv/tiny"  # on the active head: the Import form's directory


def state_of(weblab: WebLab, head: str) -> Path:
    return weblab.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")


def prepare_wizard(weblab: WebLab, tree: str = TINY_TREE, cache_dir: Path = TEST_CACHE) -> None:
    """What a person brings to the wizard, not typed into it: a root tree on the active head to import as the image
    (the tiny busybox image, which a TCG VM installs in well under a minute instead of a Debian tree's minutes), and
    the installer kernel's package already downloaded (the lab has no way out to a mirror): each head's installer
    cache is a link to ``cache_dir``."""
    kernel = fetch_kernel(resolve_package(META_PACKAGE), cache_dir)
    for head in weblab.heads:
        cache = state_of(weblab, head) / "cache" / "installer"
        cache.parent.mkdir(parents=True, exist_ok=True)
        if not cache.is_symlink():
            cache.symlink_to(cache_dir, target_is_directory=True)
    build_tiny_tree(kernel, weblab.lab.host_dir(weblab.active()) / tree.lstrip("/"))


def network_vm(weblab: WebLab, mac: str, work: Path) -> Vm:
    """A qemu VM (not started) on the private network, its disk empty: it network-boots."""
    tap = weblab.lab.add_tap("private", f"wv{os.getpid() % 100000}")
    return Vm(weblab.lab.switch_netns, tap, mac, make_disk(work / "disk.raw", 256), work / "serial.log")
