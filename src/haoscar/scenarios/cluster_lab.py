"""The cluster side of an HA lab (issue 11): what compute nodes see of the active head.

- ``apply_spec_on``: ``haoscar spec apply`` inside a head before its daemon starts, as an administrator
  does at set-up, so the netboot resources render from a database (the HA ``dnsmasq`` kind renders from it);
- ``dhcp_lease``: one DHCP exchange of a compute node (busybox udhcpc), with what the server offered;
- ``haoscar_on``: a haoscar command run inside a lab host with the host's state directory.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from haoscar.lab.lab import Lab
from haoscar.spec.models import ClusterSpec

HOST_STATE_DIR = "/var/lib/haoscar"
HOST_SPEC = "/etc/haoscar/cluster.yaml"
NETBOOT_KINDS = frozenset({"dnsmasq", "bootserver"})
# udhcpc calls its script with bound / renew / deconfig; print the lease and what the server offered: siaddr is
# the DHCP next-server, serverid the server identifier, boot_file the file named for network boot, router option 3.
UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "lease ip=$ip server=$serverid siaddr=$siaddr boot_file=$boot_file router=$router"
exit 0
"""


def needs_database(spec: ClusterSpec) -> bool:
    return any(service.kind in NETBOOT_KINDS for service in spec.ha.services)


def haoscar_on(lab: Lab, host: str, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[Any]:
    command = [sys.executable, "-m", "haoscar", "--state-dir", HOST_STATE_DIR, *argv]
    return lab.exec(host, command, check=False, timeout=timeout)


def apply_spec_on(lab: Lab, head: str) -> None:
    """The spec written to ``head``'s /etc/haoscar applied to its database (once: a database that holds the spec's
    networks stays). Existing is not enough: an earlier HA session with replication creates an empty database at
    the current schema (the source's ``_ensure_database``, a full copy), and the netboot group cannot render from it."""
    if _has_networks(lab.host_dir(head) / HOST_STATE_DIR.lstrip("/") / "haoscar.db"):
        return
    done = haoscar_on(lab, head, "spec", "apply", HOST_SPEC, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"spec apply on {head} failed: {done.stdout}{done.stderr}")


def _has_networks(path: Path) -> bool:
    if not path.exists():
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return bool(conn.execute("SELECT count(*) FROM networks").fetchone()[0])
    except sqlite3.Error:  # no schema yet
        return False
    finally:
        conn.close()


def dhcp_lease(lab: Lab, host: str, iface: str = "eth0") -> str:
    """One DHCP exchange of ``host`` (busybox udhcpc, at most 5 tries): the ``lease ...`` line(s), or ""."""
    script = lab.host_dir(host) / "srv/udhcpc.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    argv = ["busybox", "udhcpc", "-i", iface, "-n", "-q", "-t", "5", "-T", "1", "-s", "/srv/udhcpc.sh"]
    return str(lab.exec(host, argv, check=False, timeout=30).stdout)
