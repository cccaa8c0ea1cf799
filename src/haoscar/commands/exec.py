"""The parallel shell (C3's ``cexec`` and ``cpush``, run by ClusterShell): ``exec`` and ``copy`` on a node set or
``@group``, and the node groups ClusterShell's ``clush -g`` reads from the database.

A node set is resolved against the database before anything runs: an unknown group or node, a set naming no node,
a node without a private address, a bad fan-out or timeout is a FieldError and no ssh is started. Then ClusterShell
runs the command on every node (``provision.fanout``) with haoscar's cluster key, and each node's outcome is one of:
its exit code (0 is success), ``unreachable`` (ssh could not connect or log in), ``timed out``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupResolverError

from haoscar.commands.env import Env
from haoscar.db.folding import fold, some
from haoscar.db.peek import open_peek
from haoscar.errors import FieldError, FieldNotFound, FieldProblem
from haoscar.provision import fanout
from haoscar.provision.group_source import DatabaseGroupSource, groups_from_rows
from haoscar.provision.sshkeys import ensure_identity
from haoscar.spec.nodes import node_order

MAX_FANOUT = 4096
NODES_HINT = "write a node set such as node[01-16] or a group such as @compute (`haoscar groups show` lists them)"


# --------------------------------------------------------------------------------------------- requests, reports


@dataclass(frozen=True)
class ExecRequest:
    """``haoscar exec``: run ``command`` (a shell command line, as ssh and clush take it) on ``nodes``."""

    nodes: str
    command: str
    fanout: int = 64
    connect_timeout: float = 10.0
    command_timeout: float = 0.0  # 0: no limit, as clush


@dataclass(frozen=True)
class CopyRequest:
    """``haoscar copy`` (C3's cpush): ``source`` to ``dest`` on ``nodes`` (``dest`` None: the same path)."""

    nodes: str
    source: Path
    dest: str | None = None
    preserve: bool = False
    fanout: int = 64
    connect_timeout: float = 10.0
    command_timeout: float = 0.0


@dataclass(frozen=True)
class NodeResult:
    """One node's outcome: its output, its exit code, or the error that kept it from running (``exit_code`` None)."""

    node: str
    output: str
    stderr: str
    exit_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_code == 0

    @property
    def status(self) -> str:
        """``ok``, ``exit N``, ``unreachable`` or ``timed out``: what the summary folds nodes by."""
        if self.error is not None:
            return self.error.split(":", 1)[0]
        return "ok" if self.exit_code == 0 else f"exit {self.exit_code}"

    @property
    def reason(self) -> str:
        """Why it failed in a few words shared by nodes that failed alike (ssh names the address: dropped)."""
        if self.error is None:
            return ""
        return self.error.rsplit(": ", 1)[-1] if ": " in self.error else ""


@dataclass(frozen=True)
class Fold:
    """Identical output of several nodes, under their node set (``clush -b``)."""

    nodes: str
    text: str


@dataclass(frozen=True)
class ExecReport:
    nodes: str
    command: str
    results: list[NodeResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def exit_status(self) -> int:
        """0 when every node succeeded, 1 when any failed (bad input never gets this far: 2)."""
        return 0 if self.ok else 1

    @property
    def failed(self) -> list[str]:
        return [result.node for result in self.results if not result.ok]

    def outputs(self) -> list[Fold]:
        return gather({r.node: r.output for r in self.results if r.output})

    def errors(self) -> list[Fold]:
        return gather({r.node: r.stderr for r in self.results if r.stderr})

    def summary(self) -> list[tuple[str, str, str]]:
        """(node set, status, reason) rows: nodes that ended alike folded together, successes first."""
        alike: dict[tuple[str, str], list[str]] = defaultdict(list)
        for result in self.results:
            alike[(result.status, result.reason)].append(result.node)
        rows = [(fold(nodes), status, reason) for (status, reason), nodes in alike.items()]
        return sorted(rows, key=lambda row: (row[1] != "ok", row[1], row[0]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "command": self.command,
            "ok": self.ok,
            "failed": fold(self.failed),
            "seconds": self.seconds,
            "results": {r.node: {k: v for k, v in asdict(r).items() if k != "node"} for r in self.results},
        }


def gather(outputs: dict[str, str]) -> list[Fold]:
    """Nodes with identical text folded under one node set (``clush -b``), in the order of their node sets."""
    by_text: dict[str, list[str]] = defaultdict(list)
    for node, text in outputs.items():
        by_text[text].append(node)
    rank = node_order(outputs)
    ranked = [(min(rank[node] for node in nodes), Fold(fold(nodes), text)) for text, nodes in by_text.items()]
    return [f for _, f in sorted(ranked, key=lambda pair: pair[0])]


# ------------------------------------------------------------------------------------------------- bad input


def _limits(request: ExecRequest | CopyRequest) -> tuple[fanout.Limits, list[FieldProblem]]:
    problems = []
    if not 1 <= request.fanout <= MAX_FANOUT:
        problems.append(FieldProblem("fanout", f"{request.fanout}: give 1 to {MAX_FANOUT} connections at once"))
    if not request.connect_timeout > 0:
        problems.append(FieldProblem("connect_timeout", f"{request.connect_timeout:g}: give seconds above 0"))
    if not request.command_timeout >= 0:
        problems.append(
            FieldProblem("command_timeout", f"{request.command_timeout:g}: give seconds, or 0 for no limit")
        )
    limits = fanout.Limits(request.fanout, request.connect_timeout, request.command_timeout)
    return limits, problems


def _raise(problems: list[FieldProblem]) -> None:
    if len(problems) == 1:
        problem = problems[0]
        raise FieldError(problem.field, problem.detail, sep=problem.sep)
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was run")


def expand_nodes(pattern: str, source: DatabaseGroupSource) -> list[str]:
    try:
        names = list(NodeSet(pattern, resolver=GroupResolver(source)))
    except GroupResolverError as exc:
        detail = f"{pattern!r}: no group source {str(exc)!r}; haoscar's groups are @NAME; {NODES_HINT}"
        raise FieldError("nodes", detail, sep=": ") from None
    except NodeSetException as exc:
        raise FieldError("nodes", f"{pattern!r} is not a node set ({exc}); {NODES_HINT}", sep=": ") from None
    if source.unknown:
        unknown = sorted(set(source.unknown))
        known = ", ".join(f"@{name}" for name in source.groups)
        detail = f"unknown group {', '.join('@' + n for n in unknown)}; the groups are {known or 'none yet'}"
        raise FieldNotFound("nodes", detail, sep=": ")
    return names


@dataclass(frozen=True)
class Lookup:
    """What a fan-out needs from the database: every node's name, the groups, the private addresses."""

    names: list[str]
    groups: dict[str, list[str]]
    addresses: dict[str, str]


def lookup(env: Env) -> Lookup:
    """The node names, groups (unordered: a node set expanded through them comes out in ClusterShell's order) and
    private addresses, read with ``sqlite3`` (``db.peek``: no SQLAlchemy in an exec's start-up) when the database is
    current, else through the normal door (which migrates an older one first)."""
    with open_peek(env.state_dir) as peek:
        if peek is not None:
            groups = groups_from_rows(peek.group_names(), peek.node_rows(), ordered=False)
            return Lookup(peek.node_names(), groups, peek.private_addresses())
    from haoscar.provision.node_groups import node_groups, node_names, private_addresses

    with env.database.session(readonly=True) as session:
        return Lookup(node_names(session), node_groups(session, ordered=False), private_addresses(session))


def resolve_targets(env: Env, pattern: str, found: Lookup | None = None) -> dict[str, str]:
    """The nodes ``pattern`` names (a ClusterShell node set, groups from the database) and their private IPs."""
    if not pattern.strip():
        raise FieldError("nodes", f"is empty; {NODES_HINT}")
    found = found or lookup(env)
    everything, addresses = found.names, found.addresses
    names = expand_nodes(pattern, DatabaseGroupSource(found.groups, everything))
    if not names:
        raise FieldError("nodes", f"{pattern!r} names no node; {NODES_HINT}", sep=": ")
    known = set(everything)
    unknown = [name for name in names if name not in known]
    if unknown:
        detail = f"unknown node{'s' if len(unknown) > 1 else ''} {fold(unknown)}; `haoscar node list` shows them"
        raise FieldNotFound("nodes", detail, sep=": ")
    missing = [name for name in names if name not in addresses]
    if missing:
        have = "have" if len(missing) > 1 else "has"
        raise FieldError("nodes", f"{some(missing)} {have} no private address (`haoscar node set`)", sep=": ")
    return {name: addresses[name] for name in names}


def ssh_config(env: Env, found: Lookup | None = None) -> Path:
    """haoscar's ssh configuration for every node of the database (``provision.fanout``)."""
    addresses = (found or lookup(env)).addresses
    return fanout.write_ssh_config(ensure_identity(env.state_dir), addresses)


# ---------------------------------------------------------------------------------------------------- running


def _result(node: str, outcome: fanout.Outcome, limits: fanout.Limits) -> NodeResult:
    output, stderr = "\n".join(outcome.stdout), "\n".join(outcome.stderr)
    if outcome.timed_out:
        return NodeResult(node, output, stderr, None, f"timed out: after {limits.command_timeout:g} s")
    if outcome.rc is None:
        return NodeResult(node, output, stderr, None, "unreachable: no exit status came back")
    failure = ssh_failure(outcome.rc, outcome.stderr)
    if failure is not None:
        return NodeResult(node, output, "", None, f"unreachable: {failure}")
    return NodeResult(node, output, stderr, outcome.rc, None)


# What ssh itself prints (LogLevel ERROR) when it cannot reach or log in to a host, as opposed to the command's own
# exit status 255.
_SSH_ERRORS = (
    "ssh:",
    "Connection ",  # closed by, reset by, timed out during banner exchange, to ... timed out
    "Permission denied",
    "Host key verification failed",
    "kex_exchange_identification",
)
_DENIED = ": Permission denied ("  # root@198.18.1.4: Permission denied (publickey).


def ssh_failure(rc: int, stderr: list[str]) -> str | None:
    """ssh's own error line when ``rc`` is its 255 for "could not connect or log in", else None."""
    if rc != fanout.SSH_FAILED:
        return None
    said = [line.strip() for line in stderr if line.strip()]
    if not said:
        return "ssh exited with 255 and said nothing"
    # The first of ssh's lines says why (scp adds "scp: Connection closed" after it).
    first = next((line for line in said if line.startswith(_SSH_ERRORS) or _DENIED in line), None)
    return None if first is None else first.removeprefix("ssh: ")


Shell = Callable[[list[str], str, fanout.Limits, Path], dict[str, fanout.Outcome]]


def exec_command(env: Env, request: ExecRequest, shell: Shell = fanout.run_shell) -> ExecReport:
    """Run the command on every node; the report holds each node's output and outcome (nothing runs on bad input)."""
    limits, problems = _limits(request)
    if not request.command.strip():
        problems.append(FieldProblem("command", "is empty: give the command to run"))
    _raise(problems)
    found = lookup(env)
    targets = resolve_targets(env, request.nodes, found)
    config = ssh_config(env, found)
    started = env.clock.monotonic()
    outcomes = shell(list(targets), request.command, limits, config)
    seconds = round(env.clock.monotonic() - started, 3)
    results = [_result(node, outcomes[node], limits) for node in targets]
    return ExecReport(fold(targets), request.command, results, seconds)


class Copier(Protocol):
    def __call__(
        self, nodes: list[str], source: Path, dest: str, limits: fanout.Limits, config: Path, *, preserve: bool = False
    ) -> dict[str, fanout.Outcome]: ...


def copy_files(env: Env, request: CopyRequest, copier: Copier = fanout.run_copy) -> ExecReport:
    """Copy a file or a directory to every node (C3's cpush); ``dest`` defaults to the source's absolute path."""
    limits, problems = _limits(request)
    source = request.source.absolute()
    if not source.exists():
        problems.append(FieldProblem("source", f"{str(request.source)!r} does not exist here"))
    dest = request.dest if request.dest is not None else str(source)
    if not dest.strip():
        problems.append(FieldProblem("dest", "is empty: give the path on the nodes"))
    _raise(problems)
    found = lookup(env)
    targets = resolve_targets(env, request.nodes, found)
    config = ssh_config(env, found)
    started = env.clock.monotonic()
    outcomes = copier(list(targets), source, dest, limits, config, preserve=request.preserve)
    seconds = round(env.clock.monotonic() - started, 3)
    results = [_result(node, outcomes[node], limits) for node in targets]
    return ExecReport(fold(targets), f"copy {source} -> {dest}", results, seconds)


# ----------------------------------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class ShowGroups:
    """``haoscar groups``: every group, one ``group``'s nodes, or the groups holding ``node``."""

    group: str | None = None
    node: str | None = None


@dataclass(frozen=True)
class GroupsReport:
    groups: dict[str, list[str]]
    """Group name -> its nodes (only the asked group, or the groups holding the asked node)."""
    all_nodes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"groups": {name: fold(nodes) for name, nodes in self.groups.items()}, "all": fold(self.all_nodes)}


def show_groups(env: Env, request: ShowGroups) -> GroupsReport:
    """The database's node groups (``provision.node_groups``), as ClusterShell's group source serves them."""
    from haoscar.provision.node_groups import all_nodes, node_groups

    with env.database.session(readonly=True) as session:
        groups, everything = node_groups(session), all_nodes(session)
    if request.group is not None:
        name = request.group.removeprefix("@")
        if name not in groups:
            known = ", ".join(groups) or "none yet: `haoscar spec apply` makes them"
            raise FieldNotFound("group", f"unknown group {request.group!r}; the groups are {known}", sep=": ")
        groups = {name: groups[name]}
    if request.node is not None:
        if request.node not in everything:
            raise FieldNotFound("node", f"unknown node {request.node!r}; `haoscar node list` shows them", sep=": ")
        groups = {name: nodes for name, nodes in groups.items() if request.node in nodes}
    return GroupsReport(groups, everything)
