"""The steps of ``haoscar cluster test`` (``commands.cluster_test`` has the request, the report and the order).

One ``Run`` per invocation: it knows the target nodes and their addresses, which nodes ``ssh`` could not reach
(every later check fails those with ssh's reason instead of trying again), and runs each check's fan-outs through
ClusterShell (``provision.fanout``) and its jobs on this head (``env.run``), each with a timeout.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy import select

from haoscar.commands.cluster_test_fan import Answer, Transport, to_answer
from haoscar.commands.cluster_test_mpi import MpiCheck
from haoscar.commands.env import Env
from haoscar.db.folding import fold
from haoscar.db.models import Network, Node, User
from haoscar.errors import FieldNotFound
from haoscar.provision import cluster_checks as checks
from haoscar.provision import cluster_jobs as jobs
from haoscar.provision import fanout
from haoscar.provision.cluster_checks import Offset, Verdict
from haoscar.provision.node_groups import private_addresses
from haoscar.provision.sshkeys import ensure_identity

SSH_SAYS = "haoscar-cluster-test-ok"
TIME_RETRIES = 8  # nodes whose offset is undecided are measured again alone (plain ssh), up to this many
ALONE_TRIES = 3  # ssh round trips per such node at most
READERS = 3  # nodes that read every other node's /home file back (each file needs one reader besides its writer)
WAIT_SHOWN = 5.0  # seconds: a job step that waited longer for its nodes says how long


class Settings(Protocol):
    """What the steps read of the request (``commands.cluster_test.ClusterTestRequest``)."""

    @property
    def user(self) -> str | None: ...
    @property
    def home(self) -> str: ...
    @property
    def time_threshold(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def command_timeout(self) -> float: ...
    @property
    def job_timeout(self) -> float: ...
    @property
    def job_wait(self) -> float: ...
    @property
    def fanout(self) -> int: ...


def _writer(request: Settings, users: dict[str, str]) -> tuple[str | None, str]:
    """Who writes /home and where: the asked user (``root``: root in /home), else the first cluster user (lowest
    uid) in their home, else root in /home. A user the database does not know is bad input."""
    home = request.home.rstrip("/") or "/"
    if request.user == "root" or (request.user is None and not users):
        return None, home
    if request.user is None:
        name = next(iter(users))
        return name, users[name]
    if request.user not in users:
        known = ", ".join(users) or "none yet (`haoscar user add`)"
        raise FieldNotFound("user", f"unknown cluster user {request.user!r}; the users are {known}, or root", sep=": ")
    return request.user, users[request.user]


class Run:
    def __init__(self, env: Env, request: Settings, targets: dict[str, str], transport: Transport) -> None:
        self.env, self.request, self.targets, self.transport = env, request, targets, transport
        self.down: dict[str, str] = {}
        self.home_failed: dict[str, str] = {}  # node -> why /home failed there (the MPI program lives in /home)
        with env.database.session(readonly=True) as session:
            addresses = private_addresses(session)
            roles = dict(session.execute(select(Node.name, Node.role).where(Node.name.in_(list(targets)))).all())
            private = session.get(Network, "private")
            self.expected = checks.expected_names(session)
            users = dict(session.execute(select(User.name, User.home).order_by(User.uid)).all())
        self.user, self.user_dir = _writer(request, users)
        self.subnet = private.subnet if private is not None else ""
        self.compute = [node for node in targets if roles.get(node) == "compute"]
        self.config = fanout.write_ssh_config(ensure_identity(env.state_dir), addresses)
        self.limits = fanout.Limits(request.fanout, request.connect_timeout, request.command_timeout)
        self.work = env.state_dir / "cluster-test"

    @property
    def live(self) -> list[str]:
        return [node for node in self.targets if node not in self.down]

    def check(self, name: str) -> dict[str, Verdict]:
        """One check's verdict for each target node (a node ``ssh`` could not reach fails with ssh's reason)."""
        if name == "ssh":
            return self.ssh()
        step: dict[str, Callable[[list[str]], dict[str, Verdict]]] = {
            "resolve": self.resolve,
            "home": self.home,
            "time": self.time,
            "slurm": self.slurm,
            "mpi": self.mpi,
        }
        nodes = self.compute if name in ("slurm", "mpi") else list(self.targets)
        live = [node for node in nodes if node not in self.down]
        verdicts = {node: Verdict(False, self.down[node]) for node in nodes if node in self.down}
        return verdicts | (step[name](live) if live else {})

    def fan(self, nodes: list[str], command: str) -> dict[str, Answer]:
        outcomes = self.transport.shell(nodes, command, self.limits, self.config)
        missing = fanout.Outcome(rc=None)
        return {node: to_answer(outcomes.get(node, missing), self.limits.command_timeout) for node in nodes}

    # ------------------------------------------------------------------------------------------------ the checks

    def ssh(self) -> dict[str, Verdict]:
        # An echo that does not come back within a few seconds of connecting is a node that does not answer (a
        # crashed node behind a multiplexed connection, a frozen one), not a slow command.
        limits = fanout.Limits(self.limits.fanout, self.limits.connect_timeout, self.limits.connect_timeout + 5)
        outcomes = self.transport.shell(list(self.targets), f"echo {SSH_SAYS}", limits, self.config)
        verdicts = {}
        for node in self.targets:
            outcome = outcomes.get(node, fanout.Outcome(rc=None))
            answer = to_answer(outcome, limits.command_timeout)
            if outcome.timed_out:
                answer = Answer(outcome.stdout, f"unreachable: no answer within {limits.command_timeout:g} s")
            if answer.error is None and SSH_SAYS in answer.lines:
                verdicts[node] = Verdict(True, f"root@{self.targets[node]} with the cluster key")
                continue
            reason = answer.error or f"ssh ran, but the node did not echo back ({' '.join(answer.lines)[:80]!r})"
            verdicts[node] = Verdict(False, reason)
            self.down[node] = reason if reason.startswith("unreachable") else f"ssh failed: {reason}"
        return verdicts

    def resolve(self, nodes: list[str]) -> dict[str, Verdict]:
        answers = self.fan(nodes, checks.resolve_script(self.expected))
        return {
            node: Verdict(False, answer.error)
            if answer.error is not None
            else checks.resolve_verdict(self.expected, answer.lines)
            for node, answer in answers.items()
        }

    def time(self, nodes: list[str]) -> dict[str, Verdict]:
        threshold = self.request.time_threshold
        verdicts: dict[str, Verdict] = {}
        undecided: dict[str, Offset] = {}
        for node, (verdict, offset) in self._clocks(nodes).items():
            if verdict is not None:
                verdicts[node] = verdict
            elif offset is not None:
                undecided[node] = offset
        for number, (node, first) in enumerate(undecided.items()):
            # Measured again alone, one plain ssh at a time: the window is one round trip, not the whole fan-out
            # with ClusterShell's start; the narrowest of a few tries is kept (the first may still log in, the
            # next ones ride its multiplexed connection).
            best = first
            for _ in range(ALONE_TRIES if number < TIME_RETRIES else 0):
                again = self._clock_alone(node)
                if again is not None and again.error < best.error:
                    best = again
                if best.verdict(threshold) is not None:
                    break
            verdicts[node] = best.verdict(threshold) or best.undecided(threshold)
        return verdicts

    def _clock_alone(self, node: str) -> Offset | None:
        argv = ["ssh", "-F", str(self.config), "-o", f"ConnectTimeout={self.limits.connect_timeout:g}", node]
        before = self.env.clock.wall()
        try:
            done = self.env.run([*argv, checks.TIME_COMMAND], timeout=self.limits.connect_timeout + 5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        after = self.env.clock.wall()
        clock = checks.node_clock(done.stdout.decode(errors="replace").splitlines()) if done.returncode == 0 else None
        return None if clock is None else Offset(clock, before, after)

    def _clocks(self, nodes: list[str]) -> dict[str, tuple[Verdict | None, Offset | None]]:
        before = self.env.clock.wall()
        answers = self.fan(nodes, checks.TIME_COMMAND)
        after = self.env.clock.wall()
        measured: dict[str, tuple[Verdict | None, Offset | None]] = {}
        for node, answer in answers.items():
            clock = checks.node_clock(answer.lines)
            if answer.error is not None or clock is None:
                reason = answer.error or f"`{checks.TIME_COMMAND}` gave {' '.join(answer.lines)[:60]!r}"
                measured[node] = (Verdict(False, reason), None)
                continue
            offset = Offset(clock, before, after)
            measured[node] = (offset.verdict(self.request.time_threshold), offset)
        return measured

    def home(self, nodes: list[str]) -> dict[str, Verdict]:
        verdicts = HomeCheck(self, nodes).verdicts()
        self.home_failed = {node: verdict.reason for node, verdict in verdicts.items() if not verdict.ok}
        return verdicts

    def slurm(self, nodes: list[str]) -> dict[str, Verdict]:
        """One job step on the nodes; it may wait ``job_wait`` for them (``srun --immediate``), then fails with
        Slurm's reason and, when they are busy, the jobs that hold them."""
        folded = fold(nodes)
        argv = jobs.srun_argv(nodes, folded, max(1, math.ceil(self.request.job_wait)))
        started = self.env.clock.monotonic()
        done = self.job(argv, "srun", "slurm-client", self.request.job_wait)
        waited = self.env.clock.monotonic() - started
        if isinstance(done, str):
            return dict.fromkeys(nodes, Verdict(False, done))
        ran = jobs.hosts_that_ran(done.stdout.decode(errors="replace"))
        said = jobs.program_message(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        if done.returncode and "busy" in said:
            said = "; ".join(part for part in (said, self._holders(folded)) if part)
        ok = "a job step ran on it (srun through the controller)"
        if waited > WAIT_SHOWN:
            ok = f"{ok[:-1]}; {waited:.0f} s with the allocation's wait)"
        return {
            node: Verdict(True, ok)
            if jobs.short(node) in ran
            else Verdict(False, f"srun exited {done.returncode}: {said}" if done.returncode else "no task ran on it")
            for node in nodes
        }

    def _holders(self, folded: str) -> str:
        """The jobs holding the nodes (``squeue``), or "" when that cannot be read: it only explains a failure."""
        done = self.job(jobs.holders_argv(folded), "squeue", "slurm-client")
        if isinstance(done, str) or done.returncode:
            return ""
        return jobs.holders_text(done.stdout.decode(errors="replace"))

    def mpi(self, nodes: list[str]) -> dict[str, Verdict]:
        return MpiCheck(self, nodes).verdicts()

    def job(
        self, argv: list[str], what: str, package: str, wait: float = 0.0
    ) -> subprocess.CompletedProcess[bytes] | str:
        """A program run on this head with the job timeout (plus ``wait``, what it may wait for its nodes), or why
        it could not run."""
        limit = self.request.job_timeout + wait
        try:
            return self.env.run(argv, timeout=limit)
        except FileNotFoundError:
            return f"{what} is not installed on this head (Debian package {package})"
        except subprocess.TimeoutExpired:
            return f"{what} did not finish within {limit:g} s"


class HomeCheck:
    """/home read/write: each node writes a new file (a random name and the same text in it) in /home; the file
    must then be in this head's /home with that text (so the node's /home is the export, not a directory of its
    own), and another node must read it back; then the files are removed."""

    def __init__(self, run: Run, nodes: list[str]) -> None:
        self.run, self.nodes = run, nodes
        self.home, self.user = run.user_dir, run.user
        self.verdicts_: dict[str, Verdict] = {}
        self.run_id = ""
        self.unread: dict[str, list[str]] = {}

    def _fail(self, node: str, reason: str) -> None:
        self.verdicts_[node] = Verdict(False, reason)

    def verdicts(self) -> dict[str, Verdict]:
        written = self._write()
        seen = self._on_head(written)
        read_back = self._read_back(seen)
        for node, path in seen.items():
            Path(path).unlink(missing_ok=True)
            readers = read_back.get(node, [])
            if readers:
                self.verdicts_[node] = Verdict(
                    True, f"{self._who} wrote {path}; on this head; read back on {readers[0]}"
                )
            elif len(seen) == 1:
                self.verdicts_[node] = Verdict(
                    True, f"{self._who} wrote {path}; on this head (no other node to read it)"
                )
            else:
                said = "; ".join(self.unread.get(node, []))
                self._fail(node, f"{path} is in this head's {self.home} but no other node could read it ({said})")
        leftovers = [path for node, path in written.items() if node not in seen]
        if leftovers:  # written into a directory of the node's own: take them away there
            command = "rm -f " + " ".join(shlex.quote(path) for path in leftovers)
            self.run.fan([node for node in written if node not in seen], command)
        return self.verdicts_

    @property
    def _who(self) -> str:
        return self.user or "root"

    def _write(self) -> dict[str, str]:
        self.run_id = uuid.uuid4().hex[:8]
        command = checks.home_write_script(self.home, self.run_id, self.user)
        written = {}
        for node, answer in self.run.fan(self.nodes, command).items():
            path = checks.written_path(answer.lines, self.home, self.run_id)
            if answer.error is not None or path is None:
                said = answer.error or "no file named"
                self._fail(node, f"could not write in {self.home} as {self._who}: {said}")
            else:
                written[node] = path
        return written

    def _on_head(self, written: dict[str, str]) -> dict[str, str]:
        seen = {}
        for node, path in written.items():
            text = _read_own(path)
            if text is not None and path.endswith("." + text):
                seen[node] = path
            else:
                self._fail(
                    node,
                    f"wrote {path}, which is not in this head's {self.home}: the node's {self.home} is not the "
                    "export (a directory of its own?)",
                )
        return seen

    def _read_back(self, seen: dict[str, str]) -> dict[str, list[str]]:
        """Each node's file -> the other nodes that read its text back (a few readers read every file); what the
        readers said instead goes to ``self.unread`` (node -> lines), for the reason."""
        readers = list(seen)[:READERS]
        if len(seen) < 2:
            return {}
        command = checks.home_read_script(seen.values(), self.user)
        got: dict[str, list[str]] = {}
        for reader, answer in self.run.fan(readers, command).items():
            for node, path in seen.items():
                if node == reader:
                    continue
                lines = [line.partition("\t")[2].strip() for line in answer.lines if line.startswith(path + "\t")]
                if lines and path.endswith("." + lines[0]):
                    got.setdefault(node, []).append(reader)
                else:
                    said = answer.error or (lines[0] if lines else "nothing")
                    self.unread.setdefault(node, []).append(f"{reader}: {said[:120]}")
        return got


def _read_own(path: str) -> str | None:
    """The first line of a file a node wrote, never through a symbolic link (a node could plant one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(200).decode(errors="replace").strip()
