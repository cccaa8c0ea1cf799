"""``haoscar node sync``: an image version rsync'ed onto running nodes with their own files kept (SystemImager's
``si_updateclient``; docs/node-sync.md).

Bad input (an unknown node, group, image or version, a node without an image, ``--image`` naming another image than
a node's) is a FieldError before anything runs. Then, for every node: a probe (``provision.node_sync``: refused when
it holds ``/etc/haoscar/no-image-sync`` or runs on this machine's kernel), rsync of the version's tree onto its ``/``
(``--dry-run``: only listed), and after a real transfer ``systemctl daemon-reload`` and the cluster's own state
again (``cluster sync``: the image's account files replaced the node's, the cluster's users come back). Only a node
where all of it succeeded has its version recorded; any other is reported and exit status is 1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from haoscar.commands.env import Env
from haoscar.commands.exec import Copier, Shell, resolve_targets, ssh_config, ssh_failure
from haoscar.commands.wiring import image_store
from haoscar.db.folding import fold
from haoscar.db.models import Image, Node, Setting
from haoscar.db.session import record_event
from haoscar.errors import FieldError, FieldNotFound, NotFound
from haoscar.provision import fanout
from haoscar.provision import node_sync as ns
from haoscar.provision.install_plan import SETTING_NODE_FILES
from haoscar.provision.node_sync_rules import Changes

IMAGE_HINT = "give NAME or NAME:VERSION (`haoscar image list` shows them)"
_IMAGE = re.compile(r"^([^:\s]+)(?::(\d+))?$")
HEAD_ROLES = ("primary", "standby")
WORK = "node-sync"  # under the state directory: each node's filter file


@dataclass(frozen=True)
class NodeSyncRequest:
    """``haoscar node sync``: ``image`` (``NAME[:VERSION]``) onto ``nodes``; None: each node's own image, its
    current version."""

    nodes: str
    image: str | None = None
    dry_run: bool = False
    fanout: int = 16
    connect_timeout: float = 10.0
    command_timeout: float = 0.0  # 0: no limit on a node's transfer (rsync's own I/O timeout still applies)


@dataclass(frozen=True)
class NodeSyncResult:
    node: str
    image: str
    version: int
    previous: int | None  # the version the database said the node ran
    verdict: ns.Verdict

    def as_dict(self) -> dict[str, Any]:
        changes = self.verdict.changes
        return {
            "image": self.image,
            "version": self.version,
            "previous_version": self.previous,
            "status": self.verdict.status,
            "reason": self.verdict.reason,
            **changes.counts(),
            "paths": {"changed": changes.changed, "new": changes.new, "deleted": changes.deleted},
        }


@dataclass(frozen=True)
class NodeSyncReport:
    nodes: str
    dry_run: bool
    results: list[NodeSyncResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(result.verdict.ok for result in self.results)

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    @property
    def failed(self) -> list[str]:
        return [result.node for result in self.results if not result.verdict.ok]

    def summary(self) -> list[tuple[str, str, str, dict[str, int], str]]:
        """(node set, image:version, status, counts, reason): nodes that ended alike folded together."""
        alike: dict[tuple[str, str, str, tuple[int, ...]], list[str]] = defaultdict(list)
        for r in self.results:
            counts = tuple(r.verdict.changes.counts().values())
            alike[(f"{r.image}:{r.version}", r.verdict.status, r.verdict.reason, counts)].append(r.node)
        rows = [
            (fold(nodes), image, status, dict(zip(("changed", "new", "deleted"), counts, strict=True)), reason)
            for (image, status, reason, counts), nodes in alike.items()
        ]
        return sorted(rows, key=lambda row: (row[2] not in ("synced", "would sync"), row[2], row[0]))

    def change_lists(self) -> list[tuple[str, Changes]]:
        """Nodes with identical changes folded under one node set (the dry run's listing)."""
        alike: dict[tuple[tuple[str, ...], ...], list[str]] = defaultdict(list)
        found: dict[tuple[tuple[str, ...], ...], Changes] = {}
        for r in self.results:
            c = r.verdict.changes
            key = (tuple(c.changed), tuple(c.new), tuple(c.deleted))
            if any(key):
                alike[key].append(r.node)
                found[key] = c
        return [(fold(nodes), found[key]) for key, nodes in alike.items()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "failed": fold(self.failed),
            "seconds": self.seconds,
            "results": {r.node: r.as_dict() for r in self.results},
        }


@dataclass(frozen=True)
class Runners:
    """What reaches the nodes (tests pass stand-ins): ClusterShell's shell, copy and local-exec runs, and the
    cluster's state pushed again after the files (``commands.cluster_sync.sync_hosts``)."""

    shell: Shell = fanout.run_shell
    copy: Copier = fanout.run_copy
    local: fanout.LocalRunner = fanout.run_local
    restore: Callable[[Env, dict[str, str], fanout.Limits, tuple[Shell, Copier]], dict[str, str | None]] | None = None


# ------------------------------------------------------------------------------------------------- bad input


def parse_image(text: str) -> tuple[str, int | None]:
    match = _IMAGE.match(text.strip())
    if match is None:
        raise FieldError("image", f"{text!r} is not NAME or NAME:VERSION; {IMAGE_HINT}", sep=": ")
    return match.group(1), int(match.group(2)) if match.group(2) else None


@dataclass
class _Plan:
    """Per node: (image, version) and the version the database knows; per (image, version): the tree."""

    targets: dict[str, str]
    want: dict[str, tuple[str, int]] = field(default_factory=dict)
    previous: dict[str, int | None] = field(default_factory=dict)
    roots: dict[tuple[str, int], Path] = field(default_factory=dict)


def _check_limits(request: NodeSyncRequest) -> None:
    if not 1 <= request.fanout <= 4096:
        raise FieldError("fanout", f"{request.fanout}: give 1 to 4096 transfers at once")
    if not request.connect_timeout > 0:
        raise FieldError("connect_timeout", f"{request.connect_timeout:g}: give seconds above 0")
    if not request.command_timeout >= 0:
        raise FieldError("command_timeout", f"{request.command_timeout:g}: give seconds, or 0 for no limit")


def _nodes_images(env: Env, names: list[str]) -> dict[str, tuple[str | None, int | None]]:
    """Each node's image and recorded version; a head is refused (its system is not a compute image's)."""
    query = select(Node.name, Node.role, Image.name, Node.image_version).outerjoin(Image, Node.image_id == Image.id)
    with env.database.session(readonly=True) as session:
        rows = list(session.execute(query.where(Node.name.in_(names))))
    heads = [name for name, role, _i, _v in rows if role in HEAD_ROLES]
    if heads:
        detail = f"{fold(heads)}: a head is never synced from an image (the standby is cloned: `haoscar standby clone`)"
        raise FieldError("nodes", f"{detail}; name compute nodes, e.g. @compute", sep=": ")
    return {name: (image, version) for name, _role, image, version in rows}


def _version_root(env: Env, name: str, version: int | None) -> tuple[int, Path]:
    store = image_store(env.state_dir)
    if name not in store.names():
        known = ", ".join(store.names()) or "none yet"
        raise FieldNotFound("image", f"unknown image {name!r}; the images are {known}", sep=": ")
    chosen = version if version is not None else store.current(name)
    if chosen is None:
        raise FieldNotFound("image", f"image {name!r} has no version yet; build or fetch it first", sep=": ")
    try:
        return chosen, store.version_root(name, chosen)
    except NotFound as exc:
        raise FieldNotFound("image", exc.message, sep=": ") from None


def plan_sync(env: Env, request: NodeSyncRequest) -> _Plan:
    """Everything checked before anything runs: the nodes, their images, the versions and their trees."""
    _check_limits(request)
    wanted = parse_image(request.image) if request.image is not None else None
    plan = _Plan(resolve_targets(env, request.nodes))
    images = _nodes_images(env, list(plan.targets))
    without = [node for node, (image, _v) in images.items() if image is None]
    if without:
        raise FieldError("nodes", f"{fold(without)} have no image; `haoscar node set NODES --image NAME`", sep=": ")
    if wanted is not None:
        other = {node: image for node, (image, _v) in images.items() if image != wanted[0]}
        if other:
            detail = ", ".join(f"{fold([n])} uses {image}" for n, image in sorted(other.items())[:5])
            raise FieldError(
                "image", f"{wanted[0]!r} is not the image of every node ({detail}); `haoscar node set` first", sep=": "
            )
    chosen: dict[str, int] = {}
    for node, (image, previous) in sorted(images.items()):
        assert image is not None
        if image not in chosen:
            chosen[image], root = _version_root(env, image, wanted[1] if wanted is not None else None)
            plan.roots[(image, chosen[image])] = root
        plan.want[node] = (image, chosen[image])
        plan.previous[node] = previous
    return plan


# ---------------------------------------------------------------------------------------------------- running


def _unreachable(outcome: fanout.Outcome) -> ns.Verdict | None:
    if outcome.timed_out or outcome.rc is None:
        return ns.Verdict("unreachable", "no answer came back")
    failure = ssh_failure(outcome.rc, outcome.stderr)
    return ns.Verdict("unreachable", failure) if failure is not None else None


def installed_files(env: Env) -> list[str]:
    """The files the installer puts on every node from the database (``install_plan.files_tar``: the
    ``node_files`` setting, and the link that enables each unit among them): the node keeps them."""
    with env.database.session(readonly=True) as session:
        setting = session.get(Setting, SETTING_NODE_FILES)
        files: dict[str, Any] = dict(setting.value) if setting is not None and setting.value else {}
    paths = list(files)
    for path, (content, _mode) in files.items():
        if path.endswith(".service") and "WantedBy=multi-user.target" in str(content):
            paths.append(f"/etc/systemd/system/multi-user.target.wants/{path.rsplit('/', 1)[1]}")
    return paths


def _probe(env: Env, nodes: list[str], limits: fanout.Limits, config: Path, runners: Runners) -> dict[str, ns.Verdict]:
    """The nodes that must not be synced (refused, unreachable) with why; the others are absent, and their filter
    files (with their mount points) are written in ``STATE/node-sync``."""
    boot_id = ns.local_boot_id()
    installed = installed_files(env)
    outcomes = runners.shell(nodes, ns.PROBE_COMMAND, limits, config)
    verdicts: dict[str, ns.Verdict] = {}
    for node in nodes:
        outcome = outcomes[node]
        down = _unreachable(outcome)
        if down is not None:
            verdicts[node] = down
        elif outcome.rc != 0:
            verdicts[node] = ns.Verdict("failed", f"the probe exited {outcome.rc}: {' '.join(outcome.stderr)[:300]}")
        elif (why := ns.refusal(outcome.stdout, boot_id)) is not None:
            verdicts[node] = ns.Verdict("refused", why)
        else:
            ns.write_filters(env.state_dir / WORK, node, ns.mount_points(outcome.stdout), installed)
    return verdicts


def _transfer(
    env: Env, plan: _Plan, nodes: list[str], request: NodeSyncRequest, runners: Runners
) -> dict[str, ns.Verdict]:
    limits = fanout.Limits(request.fanout, request.connect_timeout, request.command_timeout)
    config = ssh_config(env)
    verdicts: dict[str, ns.Verdict] = _probe(env, nodes, limits, config, runners)
    filters = ns.filters_for_every_node(env.state_dir / WORK)
    by_version: dict[tuple[str, int], list[str]] = defaultdict(list)
    for node in nodes:
        if node not in verdicts:
            by_version[plan.want[node]].append(node)
    for (image, version), group in by_version.items():
        env.progress(f"{'dry run of ' if request.dry_run else ''}{image}:{version} onto {fold(group)}")
        transfer = ns.Transfer(group, plan.roots[(image, version)], request.dry_run)
        outcomes = ns.run_transfer(transfer, config, filters, limits, runners.local)
        for node in group:
            verdict = ns.rsync_verdict(outcomes[node], dry_run=request.dry_run, command_timeout=request.command_timeout)
            # rsync exits 255 with ssh's own message when ssh could not connect or log in.
            down = _unreachable(outcomes[node]) if verdict.status == "failed" else None
            verdicts[node] = down if down is not None and outcomes[node].rc == fanout.SSH_FAILED else verdict
    if not request.dry_run:
        _after(env, plan, verdicts, limits, runners)
    return verdicts


def _after(env: Env, plan: _Plan, verdicts: dict[str, ns.Verdict], limits: fanout.Limits, runners: Runners) -> None:
    """On the synced nodes: systemd reloads its units, the cluster's state is pushed again; a node where either
    fails is ``failed`` (its files are the new version's, but it is not called done)."""
    synced = [node for node, verdict in verdicts.items() if verdict.status == "synced"]
    if not synced:
        return
    outcomes = runners.shell(synced, ns.RELOAD_COMMAND, limits, ssh_config(env))
    for node in synced:
        if outcomes[node].rc != 0:
            said = " ".join(outcomes[node].stderr)[:300] or f"exit {outcomes[node].rc}"
            verdicts[node] = ns.Verdict(
                "failed", f"files synced; systemctl daemon-reload failed: {said}", verdicts[node].changes
            )
    restore = runners.restore or _cluster_state
    again = [node for node in synced if verdicts[node].status == "synced"]
    if again:
        errors = restore(env, {node: plan.targets[node] for node in again}, limits, (runners.shell, runners.copy))
        for node, error in errors.items():
            if error is not None:
                verdicts[node] = ns.Verdict("failed", f"files synced; cluster sync: {error}", verdicts[node].changes)


def _cluster_state(
    env: Env, targets: dict[str, str], limits: fanout.Limits, shell_copy: tuple[Shell, Copier]
) -> dict[str, str | None]:
    """``cluster sync`` on ``targets``: accounts, /etc/hosts' block, known hosts, root's key (None: done)."""
    from haoscar.commands.cluster_sync import sync_hosts

    report = sync_hosts(env, targets, limits, shell_copy)
    return {result.host: (None if result.ok else (result.error or "failed")) for result in report.hosts}


def _record(env: Env, plan: _Plan, verdicts: dict[str, ns.Verdict]) -> None:
    done = {node: plan.want[node][1] for node, verdict in verdicts.items() if verdict.status == "synced"}
    if not done:
        return
    with env.database.session() as session:
        for node in session.scalars(select(Node).where(Node.name.in_(list(done)))):
            node.image_version = done[node.name]
        versions = ", ".join(sorted({f"{plan.want[n][0]}:{v}" for n, v in done.items()}))
        record_event(session, "node-sync", f"synced {fold(list(done))} to {versions}", data={"nodes": fold(list(done))})


def node_sync(env: Env, request: NodeSyncRequest, runners: Runners | None = None) -> NodeSyncReport:
    """The image version onto every node of ``request.nodes`` (module docstring); nothing runs on bad input."""
    runners = runners or Runners()
    plan = plan_sync(env, request)
    started = env.clock.monotonic()
    verdicts = _transfer(env, plan, list(plan.targets), request, runners)
    if not request.dry_run:
        _record(env, plan, verdicts)
    seconds = round(env.clock.monotonic() - started, 3)
    results = [NodeSyncResult(node, *plan.want[node], plan.previous[node], verdicts[node]) for node in plan.targets]
    return NodeSyncReport(fold(list(plan.targets)), request.dry_run, results, seconds)
