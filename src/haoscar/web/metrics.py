"""``/metrics``: the cluster in Prometheus' text format, read from the command layer at scrape time.

A custom collector (``ClusterCollector``) asks ``commands.metrics_view.metrics_snapshot`` each time it is
collected; each application has its own ``CollectorRegistry`` (no process-global state: two consoles, or two
tests, never see each other's metrics). Prometheus cannot log in, so the endpoint takes a bearer token
(``Authorization: Bearer <token>``) from a file made on the console's first start (``commands.metrics_view``;
docs/metrics.md names the file and every metric); a wrong or missing token gets 401.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from haoscar.commands.env import Env
from haoscar.commands.heads_view import HeadView
from haoscar.commands.metrics_view import (
    DEFAULT_TOKEN_FILE,
    MetricsRequest,
    MetricsSnapshot,
    MetricsTokenRequest,
    metrics_snapshot,
    metrics_token,
    token_matches,
)
from haoscar.commands.node_table import NodeTable
from haoscar.commands.timeline import Timeline
from haoscar.errors import UserError
from haoscar.web.context import CTX

__all__ = ["TOKEN_FILE", "ClusterCollector", "families", "setup"]

log = logging.getLogger(__name__)

TOKEN_FILE: web.AppKey[Path] = web.AppKey("haoscar_metrics_token_file", Path)
_TOKEN: web.AppKey[list[str]] = web.AppKey("haoscar_metrics_token", list)
_TOKEN_ERROR: web.AppKey[list[str]] = web.AppKey("haoscar_metrics_token_error", list)
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("haoscar_metrics_registry", CollectorRegistry)
# Failover durations (seconds): a crash takes dead_time + lease + the services (0.7-5 s in the lab), a handover
# tenths of a second.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


def _bool(value: bool) -> float:
    return 1.0 if value else 0.0


def _head_families(heads: list[HeadView], error: str) -> Iterator[Metric]:
    status_ok = GaugeMetricFamily("haoscar_ha_status_ok", "1 when the local HA daemon answered its status")
    status_ok.add_metric([], _bool(not error))
    yield status_ok
    reach = GaugeMetricFamily(
        "haoscar_ha_head_reachable", "1 when the head's own status could be read", labels=["head"]
    )
    state = GaugeMetricFamily("haoscar_ha_head_state", "1 for the head's current role state", labels=["head", "state"])
    vip = GaugeMetricFamily("haoscar_ha_vip_held", "1 when the head holds the public alias", labels=["head"])
    lease = GaugeMetricFamily("haoscar_ha_lease_valid", "1 when the head holds a valid witness lease", labels=["head"])
    left = GaugeMetricFamily("haoscar_ha_lease_remaining_seconds", "Seconds left of the head's lease", labels=["head"])
    lag = GaugeMetricFamily("haoscar_ha_replication_lag_seconds", "Replication lag of the source head", labels=["head"])
    pending = GaugeMetricFamily("haoscar_ha_replication_files_pending", "Files not yet shipped", labels=["head"])
    stale = GaugeMetricFamily("haoscar_ha_replication_stale", "1 when a replicated copy is stale", labels=["head"])
    for head in heads:
        reach.add_metric([head.name], _bool(head.reachable))
        if head.state:
            state.add_metric([head.name, head.state.split(":")[0].split(" ")[0]], 1.0)
        if not head.reachable:
            continue
        vip.add_metric([head.name], _bool(head.vip_held))
        lease.add_metric([head.name], _bool(head.lease_valid))
        left.add_metric([head.name], head.lease_remaining_s or 0.0 if head.lease_valid else 0.0)
        if head.replication_role is not None:
            lag.add_metric([head.name], head.replication_lag_s or 0.0)
            pending.add_metric([head.name], float(head.files_pending or 0))
            stale.add_metric([head.name], _bool(head.replication_stale))
    yield from (reach, state, vip, lease, left, lag, pending, stale)


def _network_families(heads: list[HeadView]) -> Iterator[Metric]:
    labels = ["head", "peer", "network"]
    up = GaugeMetricFamily("haoscar_ha_heartbeat_up", "1 when the head hears its peer on the network", labels=labels)
    heard = GaugeMetricFamily(
        "haoscar_ha_heartbeat_last_heard_seconds", "Seconds since the last heartbeat on the network", labels=labels
    )
    received = CounterMetricFamily(
        "haoscar_ha_heartbeats_received", "Heartbeats received since the head's daemon started", labels=labels
    )
    loss = GaugeMetricFamily(
        "haoscar_ha_heartbeat_loss_ratio", "Share of heartbeats missed, relative to the best network", labels=labels
    )
    resource = GaugeMetricFamily(
        "haoscar_ha_resource_state", "1 for the service's current state", labels=["head", "resource", "state"]
    )
    restarts = CounterMetricFamily(
        "haoscar_ha_resource_restarts", "Restarts of the service by the head's monitor", labels=["head", "resource"]
    )
    for head in heads:
        for net in head.networks:
            key = [head.name, head.peer_name, net.name]
            up.add_metric(key, _bool(net.up))
            if net.last_heard_ms is not None:
                heard.add_metric(key, net.last_heard_ms / 1000)
            received.add_metric(key, float(net.received))
            if net.loss is not None:
                loss.add_metric(key, net.loss)
        for res in head.resources:
            resource.add_metric([head.name, res.name, res.state], 1.0)
            restarts.add_metric([head.name, res.name], float(res.restarts))
    yield from (up, heard, received, loss, resource, restarts)


def _failover_families(tl: Timeline) -> Iterator[Metric]:
    count = CounterMetricFamily(
        "haoscar_ha_failovers", "Role gains in this head's event store, by kind", labels=["kind"]
    )
    hist = HistogramMetricFamily(
        "haoscar_ha_failover_duration_seconds",
        "From the last heartbeat heard (or the handover) to the alias and services up",
        labels=["kind"],
    )
    last = GaugeMetricFamily(
        "haoscar_ha_last_failover_duration_seconds", "The newest failover or switchover's measured time"
    )
    refusals = CounterMetricFamily(
        "haoscar_ha_takeover_refusals", "Refused or aborted takeovers in this head's event store", labels=["kind"]
    )
    for kind in ("failover", "switchover", "start"):
        took = [f.took_ms / 1000 for f in tl.failovers if f.kind == kind]
        count.add_metric([kind], float(len(took)))
        # le="1.0", as prometheus_client writes its own histograms' bounds
        buckets = [(repr(float(bound)), float(sum(t <= bound for t in took))) for bound in BUCKETS]
        hist.add_metric([kind], [*buckets, ("+Inf", float(len(took)))], sum_value=sum(took))
    if tl.last_failover is not None:
        last.add_metric([], tl.last_failover.took_ms / 1000)
    for kind in ("replication.refused", "lease.denied", "takeover.aborted"):
        refusals.add_metric([kind], float(sum(r.kind == kind for r in tl.refusals)))
    yield from (count, hist, last, refusals)


def _node_families(nodes: NodeTable | None) -> Iterator[Metric]:
    per_state = GaugeMetricFamily("haoscar_nodes", "Nodes per install state", labels=["state"])
    per_stage = GaugeMetricFamily("haoscar_nodes_installing", "Installing nodes per installer stage", labels=["stage"])
    node = GaugeMetricFamily(
        "haoscar_node_install_state", "1 for each node's install state", labels=["node", "role", "state"]
    )
    version = GaugeMetricFamily(
        "haoscar_node_image_version", "The image version the node runs", labels=["node", "image"]
    )
    percent = GaugeMetricFamily(
        "haoscar_node_install_percent", "An installing node's progress in its stage", labels=["node", "stage"]
    )
    if nodes is not None:
        for name, n in nodes.by_state.items():
            per_state.add_metric([name], float(n))
        for name, n in nodes.by_stage.items():
            per_stage.add_metric([name], float(n))
        for row in nodes.rows:
            node.add_metric([row.name, row.role, row.install_state], 1.0)
            if row.image is not None and row.image_version is not None:
                version.add_metric([row.name, row.image], float(row.image_version))
            if row.stage and row.percent is not None and row.install_state == "installing":
                percent.add_metric([row.name, row.stage], float(row.percent))
    yield from (per_state, per_stage, node, version, percent)


def families(snap: MetricsSnapshot) -> Iterable[Metric]:
    """Every metric family of one snapshot (docs/metrics.md lists them)."""
    up = GaugeMetricFamily("haoscar_web_up", "1: the web console answered this scrape")
    up.add_metric([], 1.0)
    yield up
    yield from _head_families(snap.heads.heads, snap.heads.error)
    yield from _network_families(snap.heads.heads)
    yield from _failover_families(snap.timeline)
    nodes_ok = GaugeMetricFamily("haoscar_nodes_ok", "1 when the cluster database's nodes could be read")
    nodes_ok.add_metric([], _bool(snap.nodes is not None))
    yield nodes_ok
    yield from _node_families(snap.nodes)


class ClusterCollector(Collector):
    """Reads the command layer each time the registry is collected (one fresh Env per scrape)."""

    def __init__(self, make_env: Callable[[], Env]) -> None:
        self.make_env = make_env

    def collect(self) -> Iterable[Metric]:
        with self.make_env() as env:
            snap = metrics_snapshot(env, MetricsRequest())
        return list(families(snap))


def token_file(app: web.Application) -> Path:
    """``app[TOKEN_FILE]`` when set, else ``metrics-token`` in the console's directory (``WebSettings.console_dir``,
    /etc/haoscar/web by default: replicated with /etc/haoscar, so both heads accept the same token)."""
    explicit = app.get(TOKEN_FILE)
    if explicit is not None:
        return explicit
    return app[CTX].settings.console_dir / DEFAULT_TOKEN_FILE.name


async def _load_token(app: web.Application) -> None:
    """First start: make the token file (mode 0600) if there is none; keep its value for the requests.

    Only where the console has its directory (the server makes it for its certificate) or ``TOKEN_FILE`` was set:
    an application built by a unit test never writes under /etc. Without a token every scrape gets 401."""
    ctx = app[CTX]
    path = token_file(app)
    if app.get(TOKEN_FILE) is None and not path.parent.is_dir():
        return
    try:
        with ctx.make_env() as env:
            made = await asyncio.to_thread(metrics_token, env, MetricsTokenRequest(path))
    except UserError as exc:
        # An unsafe or unreadable token file disables /metrics (401, saying why), not the whole console.
        log.error("/metrics disabled: %s", exc)
        app[_TOKEN_ERROR].append(str(exc))
        return
    app[_TOKEN].append(made.token)


async def metrics_endpoint(request: web.Request) -> web.Response:
    tokens = request.app[_TOKEN]
    if not tokens or not token_matches(tokens[0], request.headers.get("Authorization")):
        why = ""
        if not tokens:
            errors: list[str] = request.app[_TOKEN_ERROR]
            why = "; ".join(errors) or "no metrics token file yet (docs/metrics.md)"
        text = "a bearer token is required: Authorization: Bearer <the token in the console's metrics-token file>"
        return web.Response(
            status=401,
            text=f"{text}{'; ' + why if why else ''}\n",
            headers={"WWW-Authenticate": 'Bearer realm="haoscar metrics"'},
        )
    body = await asyncio.to_thread(generate_latest, request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(app[CTX].make_env))
    app[_REGISTRY] = registry
    app[_TOKEN] = []
    app[_TOKEN_ERROR] = []
    app.on_startup.append(_load_token)
    app.router.add_get("/metrics", metrics_endpoint)
