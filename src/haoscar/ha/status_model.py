"""What ``haoscar ha status`` shows of one head: built from the daemon's parts, read-only.

The same dictionary goes out on the control socket and to holders of the API token; ``GET /status`` without the
token serves its public form (``ha.status_public``: the same keys minus paths, commands, key ids and error texts).
Its keys are an interface (the CLI, both-heads view, benchmarks and lab tests read them).
"""

from __future__ import annotations

import time
from typing import Any

from haoscar.ha.host import Host


def status(d: Host) -> dict[str, Any]:
    now = time.monotonic()
    resources = [item.to_dict() if hasattr(item, "to_dict") else dict(item) for item in d.resources.snapshot()]
    degraded = bool(d.health.warnings) or any(r.get("state") not in ("running", "stopped") for r in resources)
    repl = d.replication
    return {
        "node": d.cfg.name,
        "role": d.cfg.role,
        "state": d.sm.state.label,
        "state_for_s": round(now - d.state_since, 3),
        "degraded": degraded,
        "warnings": sorted(d.health.warnings.values()),
        "vip": {"address": str(d.cfg.vip), "interface": d.cfg.public_interface, "held": d.vip_held},
        # the private alias (compute nodes' address of the head; None without one) and the public side's health
        "private_vip": {"address": str(d.cfg.private_vip), "interface": d.cfg.private_interface, "held": d.vip_held}
        if d.cfg.private_vip is not None
        else None,
        "public": {**d.health.public.as_dict(), "peer_score": d.peer.public_score},
        "peer": _peer(d, now),
        "status_urls": d.status_urls,
        "lease": _lease(d, now),
        "resources": resources,
        "dropped": d.packets.drops.as_dict(),
        "keys": d.packets.keys.describe(),  # key ids and files per purpose, never a secret
        "incarnation": d.packets.incarnation,
        "fencing": {
            "method": d.cfg.fencing.method,
            "last": d.actions.last_fence.as_dict() if d.actions.last_fence else None,
        },
        "last_failover": None if d.last_failover is None else d.last_failover.as_dict(),
        "failback": d.cfg.failback,
        "timings": d.cfg.timings.as_dict(),
        "heartbeats_sent": d.packets.seq,
        "replication": repl.status() if repl is not None else None,
        "state_detail": d.sm.state.label + (f":{sub}" if repl is not None and (sub := repl.substate()) else ""),
        # how late the event loop woke (worst since start, last, worst of the recent window): a stalled daemon,
        # not a dead peer, is what a large lag means
        "max_loop_lag_ms": d.loop_lag.status()["max_lag_ms"] if d.loop_lag is not None else None,
        "loop_lag": d.loop_lag.status() if d.loop_lag is not None else None,
    }


def _peer(d: Host, now: float) -> dict[str, Any]:
    peer = d.peer
    alive = peer.alive_on(now, d.cfg.timings.dead)
    networks = {
        net: {
            "up": alive[net],
            "last_heard_ms": round((now - peer.last_heard[net]) * 1000) if net in peer.last_heard else None,
            "received": peer.received[net],
        }
        for net in peer.networks
    }
    peer_alive = any(alive.values())
    return {
        "node": d.cfg.peer_name,
        "state": peer.state.label if peer.state is not None and peer_alive else "unknown",
        "alive": peer_alive,
        "healthy": peer.healthy and peer_alive,
        "holds_vip": bool(peer.last_body.get("vip")) and peer_alive,
        "lease_remaining_s": peer.last_body.get("lease") if peer_alive else None,
        "networks": networks,
        # where the peer serves its own status: one URL per shared network, the private one first
        "status_urls": [f"http://{link.peer}:{d.cfg.status_port}/status" for link in d.cfg.links],
    }


def _lease(d: Host, now: float) -> dict[str, Any]:
    lease = d.lease
    return {
        "witness": [str(a) for a in d.cfg.witness],
        "valid": lease.valid(now),
        "remaining_s": round(lease.remaining(now), 3),
        "holder": lease.holder if lease.last_reply is not None else None,
        "holder_remaining_s": round(lease.holder_remaining, 3),
        "witness_last_reply_ms": round((now - lease.last_reply) * 1000) if lease.last_reply is not None else None,
        "denials": lease.denials,
        "probing": d.probe_why,
    }
