"""``haoscar pkg install|remove PKG... --nodes NODESET`` (OSCAR's *Select/Configure Packages* on a running cluster).

Two steps, each optional (``image_only``, ``nodes_only``):

1. **the image**: a new version of the nodes' image, made from the current one with apt in a chroot
   (``provision.image_packages_chroot``), the image's recorded package list updated, so a reinstall gives the same
   node; for an install the ``.deb`` files apt resolved there are kept with that version;
2. **the nodes**: through the parallel shell (``commands.exec``: ClusterShell), those files copied to every node
   and installed offline (nodes seldom reach a mirror), or the packages removed; each node ends ``installed`` /
   ``removed``, ``failed`` with apt's reason, or ``unreachable``.

Everything a user can get wrong (an empty list, a bad or unknown package, an unknown node or group, an image
missing) is refused before anything changes. A node that is down does not stop the others; the image version is
recorded anyway, so a reinstall, or a later ``pkg install --nodes that-node``, gives it the packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from haoscar.commands.env import Env
from haoscar.commands.exec import (
    MAX_FANOUT,
    CopyRequest,
    ExecRequest,
    NodeResult,
    copy_files,
    exec_command,
    resolve_targets,
)
from haoscar.commands.wiring import image_store
from haoscar.db.folding import fold
from haoscar.errors import FieldError, FieldNotFound, FieldProblem, NotFound, ref
from haoscar.provision import image_packages as ip
from haoscar.provision import image_packages_chroot as chroot
from haoscar.provision.image_meta import ImageSettings, read_json
from haoscar.provision.images import ImageStore
from haoscar.provision.node_groups import IMAGE_PREFIX, node_groups

Action = Literal["install", "remove"]


@dataclass(frozen=True)
class PackagesRequest:
    """``pkg install|remove``: ``packages`` on ``nodes`` (a node set or @group) and in their image."""

    packages: list[str]
    nodes: str = ""
    image: str | None = None  # None: the image the nodes are installed from
    image_only: bool = False  # only the new image version (nodes: none touched)
    nodes_only: bool = False  # only the nodes, with the .deb files an earlier run kept with the image
    fanout: int = 64
    connect_timeout: float = 10.0
    command_timeout: float = 0.0


@dataclass(frozen=True)
class NodeOutcome:
    """``installed`` / ``removed``, ``failed`` (apt's reason) or ``unreachable`` / ``timed out`` (ssh's)."""

    node: str
    state: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("installed", "removed")


@dataclass(frozen=True)
class PackagesReport:
    action: Action
    packages: list[str]
    image: str
    version: int | None  # the image version holding the change (None: the image step did not run)
    new_version: bool  # whether this run made it
    debs: list[str] = field(default_factory=list)  # the files the nodes got
    results: list[NodeOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "packages": self.packages,
            "image": self.image,
            "version": self.version,
            "new_version": self.new_version,
            "debs": self.debs,
            "ok": self.ok,
            "nodes": {r.node: {"state": r.state, "reason": r.reason} for r in self.results},
        }


# ------------------------------------------------------------------------------------------------- bad input


def _check_request(request: PackagesRequest) -> list[str]:
    problems: list[FieldProblem] = []
    if request.image_only and request.nodes_only:
        problems.append(FieldProblem("nodes_only", "and image_only exclude each other: give one or neither"))
    if not request.image_only and not request.nodes.strip():
        problems.append(FieldProblem("nodes", "is empty: give the nodes, e.g. node[01-16] or @compute"))
    if request.image_only and not request.nodes.strip() and request.image is None:
        problems.append(FieldProblem("image", "is empty: name the image to change (or the nodes using it)"))
    if not 1 <= request.fanout <= MAX_FANOUT:
        problems.append(FieldProblem("fanout", f"{request.fanout}: give 1 to {MAX_FANOUT} connections at once"))
    if not request.connect_timeout > 0 or not request.command_timeout >= 0:
        problems.append(FieldProblem("connect_timeout", "give seconds above 0 (command_timeout: 0 or more)"))
    try:
        packages = ip.check_packages("packages", request.packages)
    except FieldError as exc:
        problems[:0] = exc.problems
        packages = []
    if len(problems) == 1:
        raise FieldError(problems[0].field, problems[0].detail, sep=problems[0].sep)
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was changed")
    return packages


def _image_of(env: Env, request: PackagesRequest, nodes: list[str], store: ImageStore) -> str:
    """The image to change: the one asked for, else the one every node of the set is installed from."""
    name = request.image
    if name is None:
        with env.database.session(readonly=True) as session:
            groups = node_groups(session)
        used = {
            g.removeprefix(IMAGE_PREFIX)
            for g, members in groups.items()
            if g.startswith(IMAGE_PREFIX) and set(members) & set(nodes)
        }
        if len(used) != 1:
            which = f"they use {', '.join(sorted(used))}" if used else "they have no image"
            raise FieldError("image", f"is needed: the nodes do not share one image ({which}); name it")
        name = used.pop()
    try:
        store.current_root(name)
    except NotFound as exc:
        raise FieldNotFound("image", exc.message, sep=": ") from None
    return name


def _settings(store: ImageStore, image: str) -> ImageSettings:
    return ImageSettings.from_json(read_json(store.root / image / "image.json"))


# ----------------------------------------------------------------------------------------------- on the nodes


def classify(result: NodeResult, done: str) -> NodeOutcome:
    """A node's end from its shell result: ``done`` on success, unreachable / timed out as exec says, else failed
    with the last words of apt (or of the check that dpkg has the packages)."""
    if result.ok:
        return NodeOutcome(result.node, done)
    if result.error is not None:
        return NodeOutcome(result.node, result.status, result.reason)
    reason = ip.last_lines(result.stderr or result.output) or f"exit {result.exit_code}"
    return NodeOutcome(result.node, "failed", reason)


def _exec(env: Env, nodes: list[str], command: str, request: PackagesRequest) -> list[NodeResult]:
    limits = (request.fanout, request.connect_timeout, request.command_timeout)
    return exec_command(env, ExecRequest(fold(nodes), command, *limits)).results


def _on_nodes(
    env: Env, request: PackagesRequest, nodes: list[str], command: str, *, files: tuple[Path, str] | None, done: str
) -> list[NodeOutcome]:
    """``command`` on every node (after copying ``files`` = (directory here, directory there) when given); a node
    that failed a step is not asked to do the next."""
    ended: dict[str, NodeOutcome] = {}
    alive = list(nodes)
    if files is not None:
        source, dest = files
        env.progress(f"copying {source.name} to {fold(alive)}")
        for result in _exec(env, alive, ip.node_prepare_command(dest), request):
            if not result.ok:
                ended[result.node] = classify(result, done)
        alive = [n for n in alive if n not in ended]
        if alive:
            limits = (request.fanout, request.connect_timeout, request.command_timeout)
            copied = copy_files(env, CopyRequest(fold(alive), source, dest, False, *limits)).results
            ended |= {r.node: classify(r, done) for r in copied if not r.ok}
            alive = [n for n in alive if n not in ended]
    if alive:
        env.progress(f"{'installing' if done == 'installed' else 'removing'} on {fold(alive)}")
        ended |= {r.node: classify(r, done) for r in _exec(env, alive, command, request)}
    return [ended[node] for node in nodes]


# ---------------------------------------------------------------------------------------------------- install


def _targets(env: Env, request: PackagesRequest) -> list[str]:
    return list(resolve_targets(env, request.nodes)) if request.nodes.strip() else []


def pkg_install(env: Env, request: PackagesRequest) -> PackagesReport:
    """Install the packages into a new version of the nodes' image, then on the nodes from its ``.deb`` files."""
    packages = _check_request(request)
    nodes = _targets(env, request)
    store = image_store(env.state_dir)
    image = _image_of(env, request, nodes, store)
    in_image = ip.image_installed(store.current_root(image))
    version, new = store.current(image), False
    if not request.nodes_only and not set(packages) <= in_image:
        chroot.check_available(store, image, packages)
        recorded = list(dict.fromkeys([*_settings(store, image).packages, *packages]))
        env.progress(f"installing {' '.join(packages)} into a new version of image {image}")
        meta = chroot.apply_change(store, chroot.Change(image, packages, install=True), recorded)
        version, new = meta.version, True
    held = chroot.debs_of(store, image, packages)
    if request.nodes_only and held is None and not set(packages) <= in_image:
        detail = (
            f"no version of image {image} holds the .deb files of {', '.join(packages)}: run pkg install without "
            f"{ref('nodes_only')} where the mirror is reachable first; nothing was changed"
        )
        raise FieldError("nodes_only", detail, sep=": ")
    version = held[0] if held else version
    debs = sorted(p.name for p in held[1].glob("*.deb")) if held else []
    if request.image_only:
        return PackagesReport("install", packages, image, version, new, debs)
    where = ip.node_dir(image, version or 0)
    command = ip.node_install_command(where, debs, packages)
    files = (held[1], where) if held and debs else None
    results = _on_nodes(env, request, nodes, command, files=files, done="installed")
    return PackagesReport("install", packages, image, version, new, debs, results)


# ----------------------------------------------------------------------------------------------------- remove


def pkg_remove(env: Env, request: PackagesRequest) -> PackagesReport:
    """Remove the packages from a new version of the nodes' image, then from the nodes."""
    packages = _check_request(request)
    chroot.refuse_base(packages)
    nodes = _targets(env, request)
    store = image_store(env.state_dir)
    image = _image_of(env, request, nodes, store)
    version, new = store.current(image), False
    if not request.nodes_only:
        missing = [p for p in packages if p not in ip.image_installed(store.current_root(image))]
        if missing:
            detail = (
                f"{', '.join(missing)}: not installed in image {image} version {version}; nothing was changed "
                f"({ref('nodes_only')} removes what is only on the nodes)"
            )
            raise FieldError("packages", detail, sep=": ")
        recorded = [p for p in _settings(store, image).packages if p not in packages]
        env.progress(f"removing {' '.join(packages)} from a new version of image {image}")
        meta = chroot.apply_change(store, chroot.Change(image, packages, install=False), recorded)
        version, new = meta.version, True
    if request.image_only:
        return PackagesReport("remove", packages, image, version, new)
    results = _on_nodes(env, request, nodes, ip.node_remove_command(packages), files=None, done="removed")
    return PackagesReport("remove", packages, image, version, new, [], results)
