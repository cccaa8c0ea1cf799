"""``haoscar bench lab``: time to bring a lab of N hosts up and take it down (the CLI is cli/bench_cluster.py).

The spec is synthetic (two heads, a witness, a user host and N-4 compute clients) and the lab lives in a temporary
state directory. Floors on a 2-core machine for 50 hosts: up <= 10 s, down <= 5 s.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from haoscar.errors import UserError
from haoscar.spec import ClusterSpec

UP_TARGET_S, DOWN_TARGET_S = 10.0, 5.0


def synthetic_spec(hosts: int) -> ClusterSpec:
    """A valid spec whose lab has exactly ``hosts`` hosts."""
    if hosts < 5:
        raise UserError(f"--hosts {hosts} is too small; a lab has two heads, a witness and a user: give 5 or more")
    head = {
        "private_interface": "eth0",
        "public_interface": "eth1",
        "netmask": "255.255.240.0",
        "alias_ip": "198.19.0.10",
    }
    return ClusterSpec.model_validate(
        {
            "cluster": {"name": "benchlab"},
            "networks": {
                "private": {"subnet": "198.18.0.0/20"},
                "public": {"subnet": "198.19.0.0/24"},
                "heartbeat": {"subnet": "198.18.16.0/24"},
            },
            "heads": {
                "primary": {**head, "hostname": "head1", "private_ip": "198.18.0.1", "public_ip": "198.19.0.11",
                            "heartbeat_ip": "198.18.16.1"},
                "standby": {**head, "hostname": "head2", "private_ip": "198.18.0.2", "public_ip": "198.19.0.12",
                            "heartbeat_ip": "198.18.16.2"},
            },
            "clients": [{"image": "img", "base_name": "node", "count": hosts - 4, "padding": 3,
                         "start_ip": "198.18.1.1", "netmask": "255.255.240.0"}],
            "ha": {"witness": {"hostname": "witness", "addresses": ["198.18.0.250", "198.19.0.250"]}},
            "lab": {"client": {"hostname": "client", "ip": "198.19.0.200"}},
        }
    )  # fmt: skip


def run(hosts: int) -> dict[str, Any]:
    from haoscar.lab import Lab
    from haoscar.scenarios.lab_fixtures import pings, unique_lab_name

    spec = synthetic_spec(hosts)
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-lab-") as state:
        started = time.monotonic()
        lab = Lab.up(spec, unique_lab_name("b"), state)
        up_s = time.monotonic() - started
        try:
            last = list(lab.hosts.values())[-3]  # the last compute client
            address = last.address_on("private")
            assert address is not None
            if len(lab.hosts) != hosts or not pings(lab, "head1", address):
                raise RuntimeError(f"the {hosts}-host lab is not working: head1 cannot reach {last.name}")
        finally:
            started = time.monotonic()
            lab.down()
            down_s = time.monotonic() - started
    return {
        "hosts": hosts,
        "up_s": round(up_s, 3),
        "down_s": round(down_s, 3),
        "up_target_s": UP_TARGET_S if hosts == 50 else None,
        "down_target_s": DOWN_TARGET_S if hosts == 50 else None,
        "hosts_per_s_up": round(hosts / up_s, 1) if up_s else None,
    }
