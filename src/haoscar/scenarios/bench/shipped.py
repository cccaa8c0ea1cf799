"""The configuration a bench runs: the shipped default, and the ``config`` block every bench prints with its result.

The HA test harness (``scenarios/ha_lab.py``) turns replication off unless asked, so that the tests which are not
about it stay fast. A bench must measure what a user runs, so it asks for the shipped default explicitly:
replication on (``ha.replication`` defaults to true), the lab spec's services plus a dnsmasq DHCP service and the
token API (``status-api``, TLS with the cluster CA that ``start_ha`` writes), the per-purpose keys ``start_ha``
distributes, the witness and lab fencing. Whatever a bench changes on top (a profile's timers, a loop-lag warning
threshold) shows in the ``config`` block, so a reader sees exactly what was measured.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import haoscar
from haoscar.keyring import PURPOSES
from haoscar.spec.models import HA, ClusterSpec, Service

# The services a shipped head runs in the bench lab beyond the spec's own (added only when the spec has none of
# that kind): DHCP for the compute nodes, and the token API over TLS.
SHIPPED_SERVICES = (Service(name="dhcp", kind="dnsmasq"), Service(name="api", kind="status-api"))


def shipped_services(services: list[Service]) -> list[Service]:
    """``services`` plus each shipped service whose kind is missing, in order."""
    kinds = {s.kind for s in services}
    return [*services, *(s for s in SHIPPED_SERVICES if s.kind not in kinds)]


def shipped_overrides(spec: ClusterSpec) -> dict[str, Any]:
    """``ha:`` overrides for ``start_ha`` / ``HaoscarPair`` that give the shipped default configuration."""
    return {"replication": True, "services": shipped_services(list(spec.ha.services))}


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree haoscar runs from (``+dirty`` with uncommitted changes), or None outside git."""
    where = Path(haoscar.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def config_block(ha: HA, *, profile: str, commit: str | None = None, **extra: Any) -> dict[str, Any]:
    """What a bench ran: timers, services, replication, witness, fencing, keys and TLS, version and commit.
    ``ha`` is the effective ``ha:`` section the daemons were given; ``extra`` adds bench-specific settings."""
    return {
        "profile": profile,
        "heartbeat_interval_s": ha.heartbeat_interval,
        "dead_time_s": ha.dead_time,
        "lease_s": ha.lease_s,
        "replication": ha.replication,
        "services": [f"{s.name} ({s.kind})" for s in ha.services],
        "status_api_tls": any(s.kind == "status-api" for s in ha.services),
        "status_listener_port": ha.status_port,
        "witness": ha.witness.hostname if ha.witness else None,
        "fencing": ha.fencing.method,
        "keys": f"per purpose: {', '.join(PURPOSES)} (the witness holds the lease key only)",
        "loop_lag_warning_s": ha.loop_lag_warning,
        "haoscar_version": haoscar.__version__,
        "git_commit": commit if commit is not None else git_commit(),
        **extra,
    }
