"""The ``mpi`` check of ``haoscar cluster test``: an Open MPI hello, one rank per compute node.

Compiled on this head with ``mpicc``. With a cluster user (the one /home is tested as) it runs as OSCAR's tests
did, as that user: the program is put in the user's home on the export (written as the user, so a link planted
there cannot make root write elsewhere), and ``mpirun`` starts the ranks over the user's own ssh keys (those
``haoscar user add`` made); a node whose /home check failed cannot see the program and says so. Without a cluster
user it runs as root: the program is copied to each node's ``/var/lib/haoscar/cluster-test`` by ClusterShell and
``mpirun`` uses the cluster key. A node passes when its rank reported from it and the world size is right.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from haoscar.commands.cluster_test_fan import Answer, Transport, to_answer
from haoscar.commands.env import Env
from haoscar.provision import cluster_jobs as jobs
from haoscar.provision import fanout
from haoscar.provision.cluster_checks import MARK, Verdict

MPI_HOME_DIR = f".{MARK}-mpi"  # in the cluster user's home
_PLACE = 'mkdir -p "$1" && cd "$1" && cat > mpi-hello.new && chmod 0755 mpi-hello.new && mv -f mpi-hello.new mpi-hello'


class MpiRun(Protocol):
    """What the check uses of ``cluster_test_steps.Run``."""

    env: Env
    transport: Transport
    limits: fanout.Limits
    config: Path
    subnet: str
    work: Path
    user: str | None
    user_dir: str
    home_failed: dict[str, str]

    def fan(self, nodes: list[str], command: str) -> dict[str, Answer]: ...

    def job(
        self, argv: list[str], what: str, package: str, wait: float = 0.0
    ) -> subprocess.CompletedProcess[bytes] | str: ...


class MpiCheck:
    def __init__(self, run: MpiRun, nodes: list[str]) -> None:
        self.run, self.nodes = run, nodes
        self.verdicts_: dict[str, Verdict] = {}

    def verdicts(self) -> dict[str, Verdict]:
        binary = self._compile()
        if isinstance(binary, str):
            return dict.fromkeys(self.nodes, Verdict(False, binary))
        if self.run.user is None:
            ready = self._place(binary)
            argv = jobs.mpirun_argv(ready, self.run.config, self.run.subnet)
        else:
            ready, program = self._in_home(binary, self.run.user)
            argv = jobs.mpirun_user_argv(self.run.user, ready, program, self.run.subnet, self.run.limits)
        if not ready:
            return self.verdicts_
        done, first = self._mpirun(argv)
        if isinstance(done, str):
            return self.verdicts_ | dict.fromkeys(ready, Verdict(False, done))
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        ranks, size = jobs.ranks_by_host(out)
        said = jobs.program_message(out, err)
        who = self.run.user or "root"
        again = f"; the first mpirun exited {first[0]}: {first[1]}" if first else ""
        for node in ready:
            if ranks.get(jobs.short(node)) == 1 and size == len(ready):
                ok = f"rank reported from {node} ({size} ranks over ssh as {who}{again})"
                self.verdicts_[node] = Verdict(True, ok)
            elif done.returncode != 0:
                self.verdicts_[node] = Verdict(False, f"mpirun as {who} exited {done.returncode}: {said}")
            else:
                self.verdicts_[node] = Verdict(False, f"no rank reported from it (ranks from {sorted(ranks)})")
        return self.verdicts_

    def _mpirun(self, argv: list[str]) -> tuple[subprocess.CompletedProcess[bytes] | str, tuple[int, str] | None]:
        """The job, run a second time when mpirun itself failed (a non-zero exit): Open MPI's start-up over ssh can
        lose a daemon on a loaded head ("ORTE does not know how to route a message", seen once in make test) where a
        second run passes. Returns the run that counts and the first one's exit code and message when it failed;
        a pass on the second run says so in its reason, and a second failure is reported as such."""
        done = self.run.job(argv, "mpirun", "openmpi-bin")
        if isinstance(done, str) or done.returncode == 0:
            return done, None
        first = (
            done.returncode,
            jobs.program_message(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")),
        )
        return self.run.job(argv, "mpirun", "openmpi-bin"), first

    def _compile(self) -> Path | str:
        work = self.run.work
        work.mkdir(parents=True, exist_ok=True)
        source, binary = work / "mpi-hello.c", work / "mpi-hello"
        source.write_text(jobs.MPI_HELLO_C)
        done = self.run.job(jobs.mpicc_argv(source, binary), "mpicc", "libopenmpi-dev")
        if isinstance(done, str):
            return done
        if done.returncode != 0:
            said = jobs.program_message(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
            return f"mpicc failed on this head: {said}"
        return binary

    def _in_home(self, binary: Path, user: str) -> tuple[list[str], str]:
        """The program in ``user``'s home on the export, written as the user; the nodes that can see it."""
        directory = f"{self.run.user_dir.rstrip('/')}/{MPI_HOME_DIR}"
        argv = ["runuser", "-u", user, "--", "sh", "-c", _PLACE, "sh", directory]
        try:
            done = self.run.env.run(argv, input=binary.read_bytes(), timeout=self.run.limits.command_timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess(argv, 1, b"", str(exc).encode())
        if done.returncode != 0:
            said = jobs.program_message(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
            for node in self.nodes:
                self.verdicts_[node] = Verdict(False, f"could not put the MPI program in {directory} as {user}: {said}")
            return [], ""
        ready = []
        for node in self.nodes:
            failed = self.run.home_failed.get(node)
            if failed is None:
                ready.append(node)
            else:
                reason = f"not run: the MPI program is in {user}'s home, and /home failed on this node ({failed})"
                self.verdicts_[node] = Verdict(False, reason)
        return ready, f"{directory}/mpi-hello"

    def _place(self, binary: Path) -> list[str]:
        """The program on every node (root's run); returns the nodes that have it (the others get their reason)."""
        made = self.run.fan(self.nodes, f"mkdir -p {jobs.MPI_DIR}")
        ready = []
        for node, answer in made.items():
            if answer.error is None:
                ready.append(node)
            else:
                self.verdicts_[node] = Verdict(False, f"could not make {jobs.MPI_DIR}: {answer.error}")
        if not ready:
            return []
        outcomes = self.run.transport.copier(ready, binary, jobs.MPI_BINARY, self.run.limits, self.run.config)
        placed = []
        for node in ready:
            answer = to_answer(outcomes.get(node, fanout.Outcome(rc=None)), self.run.limits.command_timeout)
            if answer.error is None:
                placed.append(node)
            else:
                self.verdicts_[node] = Verdict(False, f"could not copy the MPI program: {answer.error}")
        return placed
