"""``slurm sync|report|status`` with fake host doors: what is pushed, and bad input changing nothing."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pytest
import yaml

from haoscar.commands import slurm
from haoscar.commands.apply import ApplySpec, spec_apply
from haoscar.commands.env import Env
from haoscar.errors import FieldError

SLURMD_C = "NodeName={name} CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=7900\n"


class FakeDoor:
    def __init__(self, host: str) -> None:
        self.host = host
        self.files: dict[str, tuple[bytes, int]] = {}
        self.commands: list[str] = []

    def read(self, path: str) -> bytes | None:
        return self.files[path][0] if path in self.files else None

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.files[path] = (data, mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        self.commands.append(command)
        if command.startswith("sha256sum "):
            path = command.split()[1]
            return (0, f"{hashlib.sha256(self.files[path][0]).hexdigest()}  {path}") if path in self.files else (1, "")
        if command == "slurmd -C":
            return 0, SLURMD_C.format(name=self.host)
        if "scontrol reconfigure" in command:
            return 1, "slurm_reconfigure error: Unable to contact slurm controller"
        return 0, ""


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[Env, str, Path]:
    raw = yaml.safe_load(resources.files("haoscar.data").joinpath("lab.yaml").read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = "198.18.0.3"
    spec = tmp_path / "cluster.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = Env(tmp_path / "state")
    spec_apply(env, ApplySpec(file=spec))
    root = tmp_path / "head1"
    root.mkdir()
    return env, str(spec), root


def doors() -> dict[str, FakeDoor]:
    return {name: FakeDoor(name) for name in ("head1", "head2", "node01", "node02")}


def test_first_sync_creates_and_pushes_the_key_and_the_config(cluster: tuple[Env, str, Path]) -> None:
    env, spec, root = cluster
    hosts = doors()
    report = slurm.sync(env, slurm.SyncSlurm(spec_file=spec, push_key=True), hosts, "head1", root)
    conf = (root / "etc/haoscar/slurm/slurm.conf").read_text()
    key = (root / "etc/haoscar/slurm/munge.key").read_bytes()
    assert report.key_created and len(key) == 1024
    assert report.controller == "198.18.0.3" and "SlurmctldHost=localhost(198.18.0.3)" in conf
    assert "NodeName=node01 NodeAddr=198.18.0.101 CPUs=4 RealMemory=7900 State=UNKNOWN" in conf
    assert report.defaults == [] and sorted(report.pushed) == ["head2", "node01", "node02"]
    for name in ("head2", "node01", "node02"):
        assert hosts[name].files["/etc/haoscar/slurm/slurm.conf"] == (conf.encode(), 0o644)
        assert hosts[name].files["/etc/haoscar/slurm/munge.key"] == (key, 0o400)
    assert not report.reconfigured and "Unable to contact" in report.reconfigure_output  # no controller yet


def test_sync_refuses_a_node_without_the_munge_key_and_changes_nothing(cluster: tuple[Env, str, Path]) -> None:
    env, spec, root = cluster
    hosts = doors()
    slurm.sync(env, slurm.SyncSlurm(spec_file=spec, push_key=True), hosts, "head1", root)
    conf_before = (root / "etc/haoscar/slurm/slurm.conf").read_bytes()
    del hosts["node02"].files["/etc/haoscar/slurm/munge.key"]  # e.g. a node reinstalled from a clean image
    hosts["node02"].files["/etc/haoscar/slurm/slurm.conf"] = (b"old", 0o644)
    for door in hosts.values():
        door.commands.clear()
    with pytest.raises(FieldError) as caught:
        slurm.sync(env, slurm.SyncSlurm(spec_file=spec), hosts, "head1", root)
    assert caught.value.field == "push_key"
    assert "node02" in str(caught.value) and "munge key is missing or different" in str(caught.value)
    assert hosts["node02"].files["/etc/haoscar/slurm/slurm.conf"] == (b"old", 0o644)
    assert (root / "etc/haoscar/slurm/slurm.conf").read_bytes() == conf_before
    assert all(c.startswith("sha256sum ") for door in hosts.values() for c in door.commands)


def test_report_of_a_node_the_database_does_not_have_is_refused(cluster: tuple[Env, str, Path]) -> None:
    env, _spec, _root = cluster
    with pytest.raises(FieldError) as caught:
        slurm.report_hardware(env, slurm.ReportHardware(node="node99", cpus=4, memory_mb=1000))
    assert caught.value.field == "node" and "node99" in str(caught.value)
    assert slurm.report_hardware(env, slurm.ReportHardware(node="node01", cpus=4, memory_mb=1000))
    assert not slurm.report_hardware(env, slurm.ReportHardware(node="node01", cpus=4, memory_mb=1000))


def test_cli_report_unknown_node_exits_2_and_records_nothing(cluster: tuple[Env, str, Path]) -> None:
    env, spec, root = cluster
    state = str(env.state_dir)
    result = subprocess.run(
        [".venv/bin/haoscar", "--state-dir", state, "slurm", "report", "node99", "--cpus", "4", "--memory-mb", "9"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[3],
    )
    assert result.returncode == 2, result.stderr
    assert "node99" in result.stderr and "Traceback" not in result.stderr
    report = slurm.sync(env, slurm.SyncSlurm(spec_file=spec, push_key=True, ask_hardware=False), doors(), "head1", root)
    assert sorted(report.defaults) == ["node01", "node02"]  # nothing was recorded for any node


class Runs:
    """A process transport answering scontrol ping and sinfo like a running controller."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        self.argv.append(list(argv))
        if "ping" in argv:
            out = b"Slurmctld(primary) at localhost is UP\n"
        else:
            out = b"node01|idle|4|7900\nnode02|allocated|4|7900\nnode77|down|1|1\n"
        return subprocess.CompletedProcess(list(argv), 0, out, b"")


def test_status_shows_each_nodes_slurm_state_and_unknown_nodes(cluster: tuple[Env, str, Path]) -> None:
    env, spec, root = cluster
    conf = root / "slurm.conf"
    conf.write_text("ClusterName=labcluster\n")
    runs = Runs()
    env.run = runs
    report = slurm.status(env, slurm.SlurmStatusRequest(spec_file=spec, conf_path=str(conf)))
    assert report.controller == "198.18.0.3" and report.controller_up
    assert {n["name"]: n["slurm_state"] for n in report.nodes} == {"node01": "idle", "node02": "allocated"}
    assert report.unknown == ["node77"]
    assert all(argv[1] == f"SLURM_CONF={conf}" for argv in runs.argv)


def test_status_without_slurm_conf_runs_no_client(cluster: tuple[Env, str, Path]) -> None:
    env, spec, root = cluster
    runs = Runs()
    env.run = runs
    report = slurm.status(env, slurm.SlurmStatusRequest(spec_file=spec, conf_path=str(root / "none.conf")))
    assert not report.controller_up and "haoscar slurm sync" in report.ping
    assert {n["slurm_state"] for n in report.nodes} == {"no controller"}
    assert runs.argv == []  # a Slurm client without a config would look for a controller in DNS
