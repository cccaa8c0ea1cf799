"""``haoscar cluster test`` (OSCAR's *Test Cluster Setup*): every check a row per node with pass or fail and why
(docs/cluster-test.md).

The checks, in order: ``ssh`` (root with the cluster key), ``resolve`` (every node's name and FQDN to its private
IP and back, and the heads' private alias, against the database), ``home`` (a file written in /home on a node is
the same file in this head's exported /home, and another node reads it), ``time`` (each node's clock against this
head's), ``slurm`` (a job step on every compute node through the controller), ``mpi`` (an Open MPI hello, one rank
per compute node). Everything on the nodes runs through the parallel shell (``provision.fanout``, ClusterShell).

No check leans on another silently: ``ssh`` always runs first, and a node it could not reach gets every other row
failed with ssh's reason (``unreachable: ...``) while the other nodes go on. Every step has a timeout. Bad input
(an unknown node or group, an unknown check) is a FieldError before anything runs. Run it on the active head: its
/home is the export and its Slurm client reaches the controller on the alias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from haoscar.commands.cluster_test_fan import Transport
from haoscar.commands.cluster_test_steps import Run
from haoscar.commands.env import Env
from haoscar.commands.exec import resolve_targets
from haoscar.db.folding import fold
from haoscar.errors import FieldError, FieldProblem
from haoscar.provision.cluster_checks import Verdict
from haoscar.spec.nodes import node_order

CHECKS = ("ssh", "resolve", "home", "time", "slurm", "mpi")
DEFAULT_NODES = "@compute"
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class ClusterTestRequest:
    """Which nodes, which checks (empty: all; ``ssh`` always runs, the others need it), as whom /home is written
    (None: the cluster user with the lowest uid, else root; ``root``: root), and the limits: seconds to connect, per
    step on a node, per job, the clock offset allowed, and how long the Slurm job may wait for its nodes (as OSCAR's
    test job waited in the queue: right after a failover the new controller may still hold nodes for a job whose end
    the crash lost, until that job's time limit)."""

    nodes: str = DEFAULT_NODES
    checks: tuple[str, ...] = ()
    user: str | None = None
    home: str = "/home"
    time_threshold: float = 1.0
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    job_timeout: float = 60.0
    fanout: int = 64
    job_wait: float = 120.0


@dataclass(frozen=True)
class CheckRow:
    check: str
    node: str
    ok: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "node": self.node, "ok": self.ok, "reason": self.reason}


@dataclass(frozen=True)
class ClusterTestReport:
    nodes: str
    checks: list[str]
    rows: list[CheckRow]
    seconds: float
    failed: list[CheckRow] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failed", [row for row in self.rows if not row.ok])

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_status(self) -> int:
        """0 when every row passed, 1 when any failed (bad input never gets this far: 2)."""
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "checks": self.checks,
            "ok": self.ok,
            "failed": len(self.failed),
            "seconds": self.seconds,
            "rows": [row.as_dict() for row in self.rows],
        }


def request_problems(request: ClusterTestRequest) -> list[FieldProblem]:
    problems = []
    unknown = [name for name in request.checks if name not in CHECKS]
    if unknown:
        problems.append(
            FieldProblem(
                "checks", f"unknown check {', '.join(map(repr, unknown))}; the checks are {', '.join(CHECKS)}", ": "
            )
        )
    if request.user is not None and not _USER.fullmatch(request.user):
        problems.append(FieldProblem("user", f"{request.user!r} is not a user name (lower case, digits, _ and -)"))
    if not request.home.startswith("/") or request.home.rstrip("/") == "":
        problems.append(FieldProblem("home", f"{request.home!r}: give the absolute path of the exported /home"))
    for name in ("time_threshold", "connect_timeout", "command_timeout", "job_timeout", "job_wait"):
        value = getattr(request, name)
        if not value > 0:
            problems.append(FieldProblem(name, f"{value:g}: give seconds above 0"))
    if not 1 <= request.fanout <= 4096:
        problems.append(FieldProblem("fanout", f"{request.fanout}: give 1 to 4096 connections at once"))
    return problems


def selected(request: ClusterTestRequest) -> list[str]:
    """The checks to run, in their order: ``ssh`` and the asked ones (all when none is asked)."""
    wanted = set(request.checks) or set(CHECKS)
    return [name for name in CHECKS if name == "ssh" or name in wanted]


def cluster_test(env: Env, request: ClusterTestRequest, transport: Transport | None = None) -> ClusterTestReport:
    """Run the checks on the nodes; nothing runs on bad input (FieldError)."""
    problems = request_problems(request)
    if len(problems) == 1:
        raise FieldError(problems[0].field, problems[0].detail, sep=problems[0].sep)  # one problem: one line
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was run")
    targets = resolve_targets(env, request.nodes)
    checks = selected(request)
    started = env.clock.monotonic()
    run = Run(env, request, targets, transport or Transport())
    results: dict[str, dict[str, Verdict]] = {}
    for check in checks:
        env.progress(f"{check}: {fold(run.live) or 'no node left'}")
        results[check] = run.check(check)
    rank = node_order(targets)
    rows = [
        CheckRow(check, node, verdict.ok, verdict.reason)
        for check in checks
        for node, verdict in sorted(results[check].items(), key=lambda item: rank[item[0]])
    ]
    return ClusterTestReport(fold(targets), checks, rows, round(env.clock.monotonic() - started, 3))
