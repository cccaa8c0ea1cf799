"""What a node installed from the real Debian image must show once it joined the cluster (issue 12, item 1), as
an administrator sees it from the head, over ssh with the cluster key: the checks of the cluster demo's VM
(``demo --cluster``), ported from the former VM test module.

``check_joined`` raises ``JoinCheckFailed`` (an AssertionError) naming what did not hold; it returns what it saw.
The Slurm side (slurmd registered, a job on the node) is the demo's own step and ``cluster test``'s rows.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.db.models import Interface, Node
from haoscar.db.session import open_database
from haoscar.scenarios.cluster_lab import HOST_STATE_DIR
from haoscar.scenarios.real_node import RealNode

OTHER_KEY = "/tmp/haoscar-join-check-other-key"  # in the head: a key the node must refuse


class JoinCheckFailed(AssertionError):
    """A join check did not hold (the message says which, with what the node answered)."""


def eventually(
    probe: Callable[[], subprocess.CompletedProcess[str]], want: Callable[[str], bool], timeout: float
) -> str:
    """Run ``probe`` until its output satisfies ``want`` (or ``timeout`` s passed); the last output."""
    deadline = time.monotonic() + timeout
    while True:
        out = probe().stdout.strip()
        if want(out) or time.monotonic() > deadline:
            return out
        time.sleep(2)


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise JoinCheckFailed(what)


def check_key(node: RealNode) -> None:
    """Root takes the cluster key, and refuses another one."""
    _expect(node.ssh("id -u").stdout.strip() == "0", f"root on {node.name} does not take the cluster key")
    node.lab.exec(node.head, ["sh", "-c", f"rm -f {OTHER_KEY}*; ssh-keygen -q -t ed25519 -N '' -f {OTHER_KEY}"])
    refused = node.lab.exec(
        node.head,
        ["ssh", "-F", "/dev/null", "-i", OTHER_KEY, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", f"root@{node.ip}", "true"],
        check=False,
    )  # fmt: skip
    _expect(
        refused.returncode == 255 and "Permission denied" in refused.stderr,
        f"{node.name} let another key in: exit {refused.returncode} {refused.stderr.strip()}",
    )


def check_identity(node: RealNode, state: Path) -> str:
    """Its host name and its address are the database's."""
    db = open_database(state, upgrade=False)
    try:
        with db.session() as session:
            iface = session.query(Interface).join(Node).filter(Node.name == node.name).one()
            ip, prefix, ifname = iface.ip, iface.prefix, iface.name
    finally:
        db.close()
    host = node.ssh("hostname").stdout.strip()
    _expect(host == node.name, f"{node.name} calls itself {host!r}")
    addresses = node.ssh(f"ip -4 -o addr show dev {ifname}").stdout
    _expect(f"inet {ip}/{prefix} " in addresses, f"{node.name} has not {ip}/{prefix} on {ifname}: {addresses}")
    return f"{ip}/{prefix} on {ifname}"


def check_time(node: RealNode, alias: str) -> None:
    """Time comes from the private alias, and the node is synchronised."""
    server = eventually(lambda: node.ssh("timedatectl show-timesync -p ServerAddress --value"), alias.__eq__, 90)
    _expect(server == alias, f"{node.name}'s time server is {server!r}, not {alias}")
    synced = eventually(lambda: node.ssh("timedatectl show -p NTPSynchronized --value"), "yes".__eq__, 90)
    _expect(synced == "yes", f"{node.name}'s clock is not synchronised: {synced!r}")


def check_home(node: RealNode, alias: str, user: str, uid: int) -> None:
    """/home is the heads' export over NFSv4 from the alias; the user's write lands with its uid on the head's disk;
    root is squashed; the stale-handle agent watches /home."""
    mount = eventually(lambda: node.ssh("findmnt -n -o SOURCE,FSTYPE /home"), bool, 60)
    _expect(mount.split() == [f"{alias}:/home", "nfs4"], f"{node.name}'s /home is {mount!r}")
    wrote = node.ssh(f"runuser -u {user} -- sh -c 'echo written by {user} > /home/{user}/from-node'")
    _expect(wrote.returncode == 0, f"{user} cannot write in its home on {node.name}: {wrote.stderr.strip()}")
    got = node.lab.host_dir(node.head) / "home" / user / "from-node"
    seen = (got.read_text(), got.stat().st_uid) if got.exists() else None
    _expect(seen == (f"written by {user}\n", uid), f"{user}'s write is on the head's disk as {seen}")
    _expect(node.ssh(f"touch /home/{user}/by-root").returncode != 0, "root is not squashed on the export")
    active = node.ssh("systemctl is-active haoscar-nfs-watch").stdout.strip()
    _expect(active == "active", f"haoscar-nfs-watch on {node.name} is {active!r}")
    watched = node.ssh("systemctl show -p ExecStart --value haoscar-nfs-watch").stdout
    _expect("/home" in watched, f"haoscar-nfs-watch does not watch /home: {watched.strip()}")


def check_user(node: RealNode, user: str, uid: int) -> None:
    """The cluster's user, with its uid, group and home."""
    entry = node.ssh(f"getent passwd {user}").stdout.strip().split(":")
    _expect(
        len(entry) > 5 and (entry[0], entry[2], entry[5]) == (user, str(uid), f"/home/{user}"),
        f"getent passwd {user} on {node.name}: {entry}",
    )
    group = node.ssh(f"getent group {user}").stdout.split(":")
    _expect(len(group) > 2 and group[2] == str(uid), f"getent group {user} on {node.name}: {group}")


def check_joined(node: RealNode, *, alias: str, user: str, uid: int) -> dict[str, Any]:
    """Every check above, from the head ``node.head``; what was seen."""
    check_key(node)
    address = check_identity(node, node.lab.host_dir(node.head) / HOST_STATE_DIR.lstrip("/"))
    check_time(node, alias)
    check_home(node, alias, user, uid)
    check_user(node, user, uid)
    return {"address": address, "time_server": alias, "home": f"{alias}:/home nfs4", "user": user}
