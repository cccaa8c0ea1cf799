"""``haoscar cluster test`` without a network: stand-in nodes answer the fan-outs (their /etc/hosts, their clock,
their /home: the head's export or a directory of their own, the /home scripts run for real in temporary
directories) and a stand-in runner answers srun, mpicc and mpirun. Rows, reasons, prerequisites, check selection,
exit statuses, JSON and the table are asserted as a user reads them."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest
from ClusterShell.NodeSet import NodeSet
from rich.console import Console

from haoscar.commands import cluster_test as module
from haoscar.commands.apply import apply_spec
from haoscar.commands.cluster_test import CheckRow, ClusterTestReport, ClusterTestRequest, cluster_test
from haoscar.commands.cluster_test_fan import Transport
from haoscar.commands.env import Env
from haoscar.db.models import User, UserGroup
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision.fanout import Limits, Outcome
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()
NODES = {"node01": "198.18.0.101", "node02": "198.18.0.102", "node03": "198.18.0.103"}
HEADS = {"head1": "198.18.0.1", "head2": "198.18.0.2"}
ALIAS = "198.18.0.3"


def _hosts() -> dict[str, str]:
    table = {}
    for name, ip in {**HEADS, **NODES}.items():
        table[name] = table[f"{name}.lab.haoscar"] = ip
    table["labcluster-head"] = table["labcluster-head.lab.haoscar"] = ALIAS
    return table


@dataclass
class FakeNode:
    home: Path  # where this node's /home really is (the export, or a directory of its own)
    hosts: dict[str, str] = field(default_factory=_hosts)
    clock: float = 0.0  # seconds ahead of the head
    down: bool = False
    reads: bool = True  # False: its reads of /home fail (a mount that went away after the writes)


@dataclass
class FakeCluster:
    export: Path
    nodes: dict[str, FakeNode]
    fanouts: list[tuple[list[str], str]] = field(default_factory=list)
    programs: list[list[str]] = field(default_factory=list)
    srun: tuple[int, str] | None = None  # (status, stderr) instead of a run on every node
    srun_wait: float = 0.0  # seconds srun waits for its allocation (on the clock below)
    squeue: str = ""  # what squeue prints: the jobs holding the nodes
    mpicc_missing: bool = False
    slow: set[str] = field(default_factory=set)  # programs that time out
    runuser: list[str] = field(default_factory=list)  # the users node scripts ran as (runuser -u USER)
    now: float = 1_780_000_000.0  # the head's wall clock (the Env's clock reads it)
    round_trip: float = 0.0  # seconds each fan-out takes on that clock (the node reads its clock half-way)
    ssh_round_trip: float = 0.0  # the same for one plain ssh (the time check's second look at a node)

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def shell(self, nodes: list[str], command: str, limits: Limits, config: Path) -> dict[str, Outcome]:
        assert config.name == "config" and limits.connect_timeout > 0
        self.fanouts.append((list(nodes), command))
        self.now += self.round_trip / 2
        answers = {node: self._answer(node, command) for node in nodes}
        self.now += self.round_trip / 2
        return answers

    def copier(
        self, nodes: list[str], source: Path, dest: str, limits: Limits, config: Path, *, preserve: bool = False
    ) -> dict[str, Outcome]:
        assert source.exists()
        self.fanouts.append((list(nodes), f"copy {dest}"))
        return {node: Outcome(rc=0) for node in nodes}

    def _answer(self, node: str, command: str) -> Outcome:
        fake = self.nodes[node]
        if fake.down:
            return Outcome(stderr=[f"ssh: connect to host {NODES[node]} port 22: No route to host"], rc=255)
        if command.startswith("echo "):
            return Outcome(stdout=[command.split()[1]], rc=0)
        if command.startswith("for k in "):
            keys = shlex.split(command.removeprefix("for k in ").split("; do", 1)[0])
            return Outcome(stdout=[f"{key}\t{self._lookup(fake, key)}" for key in keys], rc=0)
        if command == "date +%s.%N":
            return Outcome(stdout=[f"{self.now + fake.clock:.9f}"], rc=0)
        if command.startswith("mkdir -p /var/lib/haoscar/"):
            return Outcome(rc=0)
        if "head -n 1" in command and not fake.reads:
            return Outcome(stderr=["sh: 1: cannot open: Stale file handle"], rc=2)
        # The /home scripts run for real, with the node's own /home where the export is named (as this user).
        self.runuser += re.findall(r"runuser -u (\S+) -- ", command)
        command = re.sub(r"runuser -u \S+ -- ", "", command)
        argv = ["sh", "-c", command.replace(str(self.export), str(fake.home))]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        out = done.stdout.replace(str(fake.home), str(self.export))
        return Outcome(stdout=out.splitlines(), stderr=done.stderr.splitlines(), rc=done.returncode)

    @staticmethod
    def _lookup(fake: FakeNode, key: str) -> str:
        if key in fake.hosts:
            return f"{fake.hosts[key]} {key}"
        names = [name for name, ip in fake.hosts.items() if ip == key]
        return f"{key} {' '.join(names)}" if names else ""

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = list(argv)
        self.programs.append(argv)
        if argv[0] == "runuser":  # runuser -u USER -- PROGRAM...
            self.runuser.append(argv[2])
            if argv[4] == "sh":  # the MPI program written into the user's home: sh -c SCRIPT sh DIR
                directory = Path(argv[-1])
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "mpi-hello").write_bytes(input or b"")
                return subprocess.CompletedProcess(argv, 0, b"", b"")
            argv = argv[4:]
        program = argv[2] if argv[0] == "env" else argv[0]
        if program in self.slow:
            raise subprocess.TimeoutExpired(argv, timeout or 0)
        if program == "ssh":  # ssh -F CONFIG -o ConnectTimeout=N NODE date +%s.%N
            self.now += self.ssh_round_trip / 2
            out = f"{self.now + self.nodes[argv[-2]].clock:.9f}\n"
            self.now += self.ssh_round_trip / 2
            return subprocess.CompletedProcess(argv, 0, out.encode(), b"")
        if program == "mpicc":
            if self.mpicc_missing:
                raise FileNotFoundError("mpicc")
            Path(argv[argv.index("-o") + 1]).write_bytes(b"\x7fELF")
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        if program == "squeue":
            return subprocess.CompletedProcess(argv, 0, self.squeue.encode(), b"")
        if program == "srun":
            self.now += self.srun_wait
            if self.srun is not None:
                return subprocess.CompletedProcess(argv, self.srun[0], b"", self.srun[1].encode())
            listed = next(arg for arg in argv if arg.startswith("--nodelist=")).split("=", 1)[1]
            return subprocess.CompletedProcess(argv, 0, "".join(f"{n}\n" for n in NodeSet(listed)).encode(), b"")
        assert program == "mpirun", argv
        hosts = [entry.split(":")[0] for entry in argv[argv.index("--host") + 1].split(",")]
        out = "".join(f"haoscar-mpi-hello {rank} {len(hosts)} {host}\n" for rank, host in enumerate(hosts))
        return subprocess.CompletedProcess(argv, 0, out.encode(), b"")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Env, FakeCluster]]:
    spec, problems = check_text(
        LAB.replace("count: 2", "count: 3").replace(
            "    image: serverimage\n", "    image: serverimage\n    private_alias_ip: 198.18.0.3\n"
        ),
        "lab.yaml",
    )
    assert spec is not None, problems
    export = tmp_path / "export"
    export.mkdir()
    fake = FakeCluster(export, {name: FakeNode(export) for name in NODES})
    env = Env(state_dir=tmp_path / "state", run=fake.run, clock=fake)
    apply_spec(env.database, spec)
    yield env, fake
    env.close()


def _run(env: Env, fake: FakeCluster, **fields: object) -> ClusterTestReport:
    request = ClusterTestRequest(home=str(fake.export), **fields)  # type: ignore[arg-type]
    return cluster_test(env, request, Transport(shell=fake.shell, copier=fake.copier))


def _rows(report: ClusterTestReport) -> dict[tuple[str, str], tuple[bool, str]]:
    return {(row.check, row.node): (row.ok, row.reason) for row in report.rows}


def test_every_check_passes_on_a_healthy_cluster(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    report = _run(env, fake)
    rows = _rows(report)
    assert report.exit_status == 0 and report.ok, report.failed
    assert [row.check for row in report.rows][::3] == ["ssh", "resolve", "home", "time", "slurm", "mpi"]
    assert [row.node for row in report.rows][:3] == ["node01", "node02", "node03"]
    assert rows[("ssh", "node02")] == (True, "root@198.18.0.102 with the cluster key")
    assert rows[("resolve", "node01")] == (True, "12 names and 6 addresses agree with the database")
    assert rows[("home", "node01")][1].startswith(f"root wrote {fake.export}/.haoscar-cluster-test.")
    assert rows[("home", "node01")][1].endswith("; on this head; read back on node02")
    assert rows[("time", "node03")][1].startswith("offset +0.0")
    assert rows[("mpi", "node02")] == (True, "rank reported from node02 (3 ranks over ssh as root)")
    assert list(fake.export.iterdir()) == []  # the files are removed
    srun = next(argv for argv in fake.programs if "srun" in argv)
    assert "--nodelist=node[01-03]" in srun and "--ntasks-per-node=1" in srun
    data = report.as_dict()
    assert data["ok"] is True and data["failed"] == 0 and data["nodes"] == "node[01-03]"
    assert data["rows"][0] == {"check": "ssh", "node": "node01", "ok": True, "reason": rows[("ssh", "node01")][1]}


def test_a_down_node_fails_every_row_as_unreachable_and_is_not_tried_again(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.nodes["node03"].down = True
    report = _run(env, fake)
    assert report.exit_status == 1
    down = [row for row in report.rows if row.node == "node03"]
    assert [row.check for row in down] == ["ssh", "resolve", "home", "time", "slurm", "mpi"]
    reason = "unreachable: connect to host 198.18.0.103 port 22: No route to host"
    assert {(row.ok, row.reason) for row in down} == {(False, reason)}
    assert all(row.ok for row in report.rows if row.node != "node03"), report.failed
    assert all("node03" not in nodes for nodes, _ in fake.fanouts[1:])
    assert "--nodelist=node[01-02]" in next(argv for argv in fake.programs if "srun" in argv)


def test_a_wrong_hosts_entry_fails_that_nodes_resolution_naming_it(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.nodes["node02"].hosts["node03.lab.haoscar"] = "198.18.0.99"
    del fake.nodes["node02"].hosts["labcluster-head"]
    report = _run(env, fake, checks=("resolve",))
    rows = _rows(report)
    assert report.exit_status == 1
    assert rows[("resolve", "node02")] == (
        False,
        "node03.lab.haoscar -> 198.18.0.99 (the database: 198.18.0.103); "
        "labcluster-head does not resolve (the database: 198.18.0.3)",
    )
    assert rows[("resolve", "node01")][0] and rows[("resolve", "node03")][0]


def test_a_home_of_its_own_is_not_the_export(cluster: tuple[Env, FakeCluster], tmp_path: Path) -> None:
    env, fake = cluster
    own = tmp_path / "node02-home"
    own.mkdir()
    fake.nodes["node02"].home = own
    report = _run(env, fake, checks=("home",))
    rows = _rows(report)
    ok, reason = rows[("home", "node02")]
    assert not ok
    assert reason.startswith(f"wrote {fake.export}/.haoscar-cluster-test.")
    export = fake.export
    assert reason.endswith(
        f"which is not in this head's {export}: the node's {export} is not the export (a directory of its own?)"
    )
    assert rows[("home", "node01")][0] and rows[("home", "node03")][0]
    assert list(own.iterdir()) == [] and list(fake.export.iterdir()) == []  # nothing left behind anywhere


def test_a_file_no_other_node_reads_fails_with_what_the_readers_said(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.nodes["node03"].down = True
    fake.nodes["node02"].reads = False
    report = _run(env, fake, checks=("home",))
    rows = _rows(report)
    ok, reason = rows[("home", "node01")]
    assert not ok
    assert reason.endswith(
        "is in this head's " + str(fake.export) + " but no other node could read it "
        "(node02: exit 2: sh: 1: cannot open: Stale file handle)"
    ), reason
    assert rows[("home", "node02")][0]  # node01 read node02's file back
    assert list(fake.export.iterdir()) == []


def _add_users(env: Env, fake: FakeCluster) -> None:
    with env.database.session() as session:
        session.add(UserGroup(name="users", gid=100, external=True))
        session.flush()
        for name, uid in (("bob", 2001), ("alice", 2000)):
            session.add(User(name=name, uid=uid, group="users", shell="/bin/bash", home=f"{fake.export}/{name}"))
    for name in ("alice", "bob"):
        (fake.export / name).mkdir()


def test_mpi_runs_as_the_cluster_user_from_their_home(cluster: tuple[Env, FakeCluster], tmp_path: Path) -> None:
    env, fake = cluster
    _add_users(env, fake)
    own = tmp_path / "node03-home"
    (own / "alice").mkdir(parents=True)
    fake.nodes["node03"].home = own  # node03 does not mount the export: the program in alice's home is not there
    report = _run(env, fake, checks=("home", "mpi"))
    rows = _rows(report)
    assert rows[("mpi", "node01")] == (True, "rank reported from node01 (2 ranks over ssh as alice)")
    ok, reason = rows[("mpi", "node03")]
    assert not ok
    assert reason.startswith("not run: the MPI program is in alice's home, and /home failed on this node (wrote ")
    program = fake.export / "alice" / ".haoscar-cluster-test-mpi" / "mpi-hello"
    assert program.read_bytes() == b"\x7fELF"
    mpirun = next(argv for argv in fake.programs if "mpirun" in argv)
    assert mpirun[:5] == ["runuser", "-u", "alice", "--", "mpirun"]
    assert "--allow-run-as-root" not in mpirun and mpirun[-1] == str(program)
    assert mpirun[mpirun.index("--host") + 1] == "node01:1,node02:1"


def test_home_is_written_as_the_first_cluster_user_in_their_home(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    _add_users(env, fake)
    report = _run(env, fake, checks=("home",))
    assert report.ok, report.failed
    reason = _rows(report)[("home", "node02")][1]
    assert reason.startswith(f"alice wrote {fake.export}/alice/.haoscar-cluster-test.")
    assert fake.runuser == ["alice"] * 6  # three nodes write, the same three read every file back
    assert list((fake.export / "alice").iterdir()) == []

    with pytest.raises(FieldNotFound) as caught:
        _run(env, fake, checks=("home",), user="carol")
    assert str(caught.value) == "--user: unknown cluster user 'carol'; the users are alice, bob, or root"
    report = _run(env, fake, checks=("home",), user="root")
    assert _rows(report)[("home", "node01")][1].startswith(f"root wrote {fake.export}/.haoscar-cluster-test.")


def test_a_clock_off_by_more_than_the_threshold_fails(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.nodes["node01"].clock = 5.0
    fake.nodes["node03"].clock = -0.5
    fake.round_trip = 0.2
    report = _run(env, fake, checks=("time",), time_threshold=1.0)
    rows = _rows(report)
    assert rows[("time", "node01")] == (
        False,
        "offset +5.000 s (± 0.100 s): more than 1 s from the head's clock",
    )
    assert rows[("time", "node02")] == (True, "offset +0.000 s (± 0.100 s)")
    assert rows[("time", "node03")] == (True, "offset -0.500 s (± 0.100 s)")


def test_a_round_trip_too_slow_to_tell_is_measured_again_alone(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.nodes["node02"].clock = 0.8
    fake.nodes["node03"].clock = 1.2
    fake.round_trip = 1.0  # ± 0.5 s: node02 (+0.8) and node03 (+1.2) may be within 1 s or not
    fake.ssh_round_trip = 0.1  # alone, one ssh: ± 0.05 s
    report = _run(env, fake, checks=("time",), time_threshold=1.0)
    rows = _rows(report)
    assert rows[("time", "node01")] == (True, "offset +0.000 s (± 0.500 s)")
    assert rows[("time", "node02")] == (True, "offset +0.800 s (± 0.050 s)")
    assert rows[("time", "node03")] == (False, "offset +1.200 s (± 0.050 s): more than 1 s from the head's clock")
    ssh = [argv for argv in fake.programs if argv[0] == "ssh"]
    assert [argv[-2:] for argv in ssh] == [["node02", "date +%s.%N"], ["node03", "date +%s.%N"]]
    assert ssh[0][1:3] == ["-F", str(env.state_dir / "ssh" / "config")]

    fake.programs.clear()
    fake.ssh_round_trip = 1.0  # still too slow alone: the row says it cannot tell, never a guessed pass
    rows = _rows(_run(env, fake, checks=("time",), time_threshold=1.0))
    assert rows[("time", "node02")] == (
        False,
        "offset +0.800 s (± 0.500 s): cannot tell whether it is within 1 s (the round trip took too long)",
    )


def test_slurm_failure_gives_slurms_message_on_each_node(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.srun = (1, "srun: error: Unable to allocate resources: Requested node configuration is not available\n")
    report = _run(env, fake, checks=("slurm",))
    reasons = {row.reason for row in report.rows if row.check == "slurm"}
    assert reasons == {
        "srun exited 1: srun: error: Unable to allocate resources: Requested node configuration is not available"
    }
    assert report.exit_status == 1


def test_busy_nodes_fail_with_the_jobs_that_hold_them(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.srun = (1, "srun: error: Unable to allocate resources: Requested nodes are busy\n")
    fake.squeue = "7|haoscar-cluster-test|root|RUNNING|0:42|1:00|node[01-03]\n"
    report = _run(env, fake, checks=("slurm",), job_wait=30)
    assert _rows(report)[("slurm", "node02")] == (
        False,
        "srun exited 1: srun: error: Unable to allocate resources: Requested nodes are busy; "
        "held by job 7 haoscar-cluster-test (root, RUNNING 0:42 of 1:00 on node[01-03])",
    )
    srun = next(argv for argv in fake.programs if "srun" in argv)
    assert "--immediate=30" in srun


def test_a_job_that_waited_for_its_nodes_says_how_long(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.srun_wait = 47.2
    report = _run(env, fake, checks=("slurm",))
    assert _rows(report)[("slurm", "node03")] == (
        True,
        "a job step ran on it (srun through the controller; 47 s with the allocation's wait)",
    )


def test_jobs_that_hang_or_cannot_start_fail_with_the_reason(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    fake.slow = {"srun"}
    fake.mpicc_missing = True
    report = _run(env, fake, checks=("slurm", "mpi"), job_timeout=7, job_wait=3)
    rows = _rows(report)
    assert rows[("slurm", "node01")] == (False, "srun did not finish within 10 s")
    assert rows[("mpi", "node02")] == (False, "mpicc is not installed on this head (Debian package libopenmpi-dev)")


def test_check_selection_runs_ssh_and_the_named_checks_only(cluster: tuple[Env, FakeCluster]) -> None:
    env, fake = cluster
    report = _run(env, fake, nodes="node02", checks=("time",))
    assert [(row.check, row.node) for row in report.rows] == [("ssh", "node02"), ("time", "node02")]
    assert report.checks == ["ssh", "time"]
    assert [command for _, command in fake.fanouts] == ["echo haoscar-cluster-test-ok", "date +%s.%N"]
    assert fake.programs == []


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"nodes": "@nope"}, "nodes", "unknown group @nope"),
        ({"nodes": "node0[1-5]"}, "nodes", "unknown nodes node[04-05]"),
        ({"checks": ("dns",)}, "checks", "unknown check 'dns'; the checks are ssh, resolve, home, time, slurm, mpi"),
        ({"time_threshold": 0}, "time_threshold", "0: give seconds above 0"),
        ({"job_wait": -5}, "job_wait", "-5: give seconds above 0"),
        ({"user": "Bad User"}, "user", "'Bad User' is not a user name"),
    ],
)
def test_bad_input_names_the_field_and_runs_nothing(
    cluster: tuple[Env, FakeCluster], fields: dict[str, object], field: str, text: str
) -> None:
    env, fake = cluster
    error = FieldNotFound if field == "nodes" else FieldError
    with pytest.raises(error) as caught:
        _run(env, fake, **fields)
    assert caught.value.field == field
    assert text in str(caught.value)
    assert fake.fanouts == [] and fake.programs == []


def test_the_cli_prints_every_row_whole_and_exits_1_on_a_failure(
    cluster: tuple[Env, FakeCluster], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env, fake = cluster
    env.close()
    fake.nodes["node03"].down = True
    monkeypatch.setattr(module, "Transport", lambda: Transport(shell=fake.shell, copier=fake.copier))
    from haoscar.cli.main import run

    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "cluster", "test", "--check", "resolve", "node0[1-3]"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 1
    lines = [line.split(maxsplit=3) for line in out.splitlines()]
    assert ["ssh", "node01", "pass", "root@198.18.0.101 with the cluster key"] in lines
    assert ["resolve", "node03", "FAIL", "unreachable: connect to host 198.18.0.103 port 22: No route to host"] in lines

    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "cluster", "test", "--json", "--check", "resolve", "node01"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 0
    assert '"ok": true' in out and '"check": "resolve"' in out

    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "cluster", "test", "@rack9"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "NODESET: unknown group @rack9" in err


def test_a_narrow_terminal_never_cuts_check_node_or_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from haoscar.cli import cluster as cli

    long = "hapcompute-rack07n001"
    reason = "node03.lab.haoscar -> 198.18.0.99 (the database: 198.18.0.103); labcluster-head does not resolve"
    rows = [CheckRow("resolve", long, False, reason), CheckRow("ssh", long, True, "root@198.18.0.101")]
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=80, force_terminal=True, color_system=None))
    cli.render_test(ClusterTestReport(long, ["ssh", "resolve"], rows, 1.0), as_json=False)
    text = out.getvalue()
    assert re.search(rf"\bresolve\b.*\b{long}\b.*\bFAIL\b", text), text
    assert re.search(rf"\bssh\b.*\b{long}\b.*\bpass\b", text), text
    assert "198.18.0.103" in text.replace("\n", "").replace(" ", "").replace("│", "")
