"""What a head's status shows to anyone who can reach it without a credential: the read-only plain-HTTP
``GET /status`` (``ha.status_port``) and ``GET /status`` of the TLS API without the token.

A monitor (and the peer column of ``haoscar ha status``) needs the role and state, health, the heartbeats per
network, the lease, the resources' states and the replication lag; it does not need where the keys, the token or
the replicated trees live, the commands the resources run, the key ids or error texts that quote them. So the
answer is built from a list of allowed keys (an unknown new field stays private until it is added here), and
every remaining text has absolute paths replaced (``<path>``): a warning or a failover reason may quote one.
The full status stays on the control socket (root only) and on the TLS API for holders of the token.
"""

from __future__ import annotations

import re
from typing import Any

# key -> None (keep the value, texts scrubbed) or the allowed keys of a nested dict (or of each dict in a list)
Shape = dict[str, "Shape | None"]

_NETWORK: Shape = {"up": None, "last_heard_ms": None, "received": None}
PUBLIC: Shape = {
    "node": None,
    "role": None,
    "state": None,
    "state_for_s": None,
    "state_detail": None,
    "degraded": None,
    "warnings": None,
    "vip": {"address": None, "held": None},
    "peer": {
        "node": None,
        "state": None,
        "alive": None,
        "healthy": None,
        "holds_vip": None,
        "lease_remaining_s": None,
        "networks": None,  # network name -> _NETWORK, checked below
        "status_urls": None,
    },
    "status_urls": None,
    "lease": {
        "witness": None,
        "valid": None,
        "remaining_s": None,
        "holder": None,
        "holder_remaining_s": None,
        "witness_last_reply_ms": None,
        "denials": None,
        "probing": None,
    },
    "resources": {"name": None, "kind": None, "state": None, "restarts_in_window": None, "total_restarts": None},
    "dropped": None,
    "fencing": {"method": None, "last": {"ok": None, "method": None, "target": None, "seconds": None}},
    "last_failover": {"kind": None, "cause": None, "reason": None, "took_s": None, "since_dead_s": None, "wall": None},
    "failback": None,
    "timings": None,
    "heartbeats_sent": None,
    "replication": {
        "node": None,
        "role": None,
        "peer": None,
        "phase": None,
        "substate": None,
        "lag_s": None,
        "files_pending": None,
        "bytes_pending": None,
        "last_full_pass": None,
        "db_lsn": None,
        "db_connected": None,
        "standby_stale": None,
        "own_copy_stale": None,
        "forced": None,
        "files_shipped": None,
        "bytes_shipped": None,
    },
    "max_loop_lag_ms": None,
    "loop_lag": None,
}

# An absolute path in a text: a slash after a start, a space or a quote, then at least one name character.
_PATH = re.compile(r"(?<![\w:/.])/[\w.@+-][^\s'\"`,;()\[\]{}]*")


def scrub(text: str) -> str:
    """``text`` with every absolute path replaced by ``<path>`` (URLs, whose paths follow ``//host``, stay)."""
    return _PATH.sub("<path>", text)


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    return value


def _shaped(value: Any, shape: Shape | None) -> Any:
    if shape is None:
        return _value(value)
    if isinstance(value, list):
        return [_shaped(item, shape) for item in value]
    if not isinstance(value, dict):
        return _value(value)
    return {key: _shaped(value[key], inner) for key, inner in shape.items() if key in value}


def public_status(full: dict[str, Any]) -> dict[str, Any]:
    """The monitor's view of ``full`` (a head's status as ``haoscar.ha.status_model`` builds it)."""
    out: dict[str, Any] = _shaped(full, PUBLIC)
    peer = out.get("peer")
    if isinstance(peer, dict) and isinstance(peer.get("networks"), dict):
        peer["networks"] = {str(net): _shaped(info, _NETWORK) for net, info in peer["networks"].items()}
    return out
