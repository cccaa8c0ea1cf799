"""What the web console's Prometheus endpoint (``/metrics``) reports, read at scrape time, and its bearer token.

Prometheus cannot log in, so ``/metrics`` takes a bearer token instead of a session: a random secret in a file
(mode 0600, root's), made on the console's first start. Its default place is under ``/etc/haoscar`` because that
tree is replicated to the standby head (``ha.replicate``): the console follows the public alias after a failover
and must accept the same token there. ``docs/metrics.md`` names every metric.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from haoscar.commands.env import Env
from haoscar.commands.heads_view import Heads, HeadsRequest, heads
from haoscar.commands.node_table import NodeTable, NodeTableRequest, node_table
from haoscar.commands.timeline import Timeline, TimelineRequest, timeline
from haoscar.errors import UserError

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "MetricsRequest",
    "MetricsSnapshot",
    "MetricsToken",
    "MetricsTokenRequest",
    "metrics_snapshot",
    "metrics_token",
    "token_matches",
]

DEFAULT_TOKEN_FILE = Path("/etc/haoscar/web/metrics-token")
TOKEN_BYTES = 32


@dataclass(frozen=True)
class MetricsTokenRequest:
    path: Path = DEFAULT_TOKEN_FILE
    """The token file: made (mode 0600) when missing, else read."""


@dataclass(frozen=True)
class MetricsToken:
    path: Path
    token: str
    created: bool


@dataclass(frozen=True)
class MetricsRequest:
    timeout: float = 1.0
    """Seconds to wait for the peer head's status."""


@dataclass(frozen=True)
class MetricsSnapshot:
    heads: Heads
    timeline: Timeline
    nodes: NodeTable | None
    nodes_error: str = ""
    """Why the nodes could not be read (no cluster database yet)."""


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UserError(f"cannot read the metrics token {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid not in (0, os.geteuid()) or stat.S_IMODE(info.st_mode) & 0o077:
            raise UserError(
                f"the metrics token {path} is readable by others or not root's (mode "
                f"{stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid}): remove it and restart the console"
            )
        token = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if len(token) < 16:
        raise UserError(f"the metrics token {path} is empty or too short: remove it and restart the console")
    return token


def metrics_token(env: Env, request: MetricsTokenRequest) -> MetricsToken:
    """The bearer token of ``/metrics``: read, or made (mode 0600) when the file does not exist yet."""
    from haoscar.keys import write_secret

    path = request.path
    created = False
    if not path.exists() and not path.is_symlink():
        write_secret(path, secrets.token_urlsafe(TOKEN_BYTES) + "\n", force=False, what="metrics token")
        created = True
    return MetricsToken(path, _read_token(path), created)


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries the token (``Bearer <token>``), compared in constant time."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def metrics_snapshot(env: Env, request: MetricsRequest) -> MetricsSnapshot:
    """Both heads, the event store's failovers and refusals, and the nodes with their install states."""
    both = heads(env, HeadsRequest(timeout=request.timeout))
    tl = timeline(env, TimelineRequest(limit=1))
    try:
        nodes: NodeTable | None = node_table(env, NodeTableRequest())
        error = ""
    except UserError as exc:
        nodes, error = None, str(exc)
    return MetricsSnapshot(both, tl, nodes, error)
