"""Slurm in a lab, for tests and the cluster-failover bench: munged on every host, slurmd on the compute clients,
slurmctld as the ``slurmctld`` HA service of the active head, ``slurm.conf`` and the munge key from
``commands.slurm.sync`` through doors into the lab hosts.

Every daemon gets its paths from flags and haoscar's private directories, never from the machine's /etc/slurm or
/etc/munge: ``munged -F --key-file --socket --pid-file --log-file --seed-file`` (as the munge user),
``slurmd -D -f``, clients with ``SLURM_CONF``. The munge socket is the default ``/run/munge/munge.socket.2``, which
is each lab host's own (/run is private), so Slurm's ``AuthInfo=socket=`` is the same string everywhere.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.commands import slurm
from haoscar.commands.env import Env
from haoscar.db.session import open_database
from haoscar.fsutil import atomic_write
from haoscar.lab.lab import Lab
from haoscar.lab.procs import stop_started
from haoscar.provision.slurm_conf import CONF_PATH, MUNGE_KEY_PATH
from haoscar.spec.models import ClusterSpec

PRIVATE_DIRS = ("/etc/haoscar", "/var/lib/haoscar", "/home", "/srv", "/run")
MUNGE_DIR = "/var/lib/haoscar/munge"
SLURM_ENV = f"SLURM_CONF={CONF_PATH}"


@dataclass
class LabDoor:
    """A lab host as a ``commands.install_complete.Transport``: files through its private directories as seen
    from here, commands with ``Lab.exec``."""

    lab: Lab
    host: str

    def _local(self, path: str) -> Path:
        if not path.startswith(tuple(d + "/" for d in PRIVATE_DIRS)):
            raise ValueError(f"{path} is not in a lab host's private directories")
        return self.lab.host_dir(self.host) / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        try:
            return self._local(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes, mode: int) -> None:
        local = self._local(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(local, data, mode=mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        done = self.lab.exec(self.host, ["sh", "-c", command], check=False, timeout=timeout)
        return done.returncode, (done.stdout + done.stderr).strip()


def doors(lab: Lab, hosts: list[str]) -> dict[str, LabDoor]:
    return {host: LabDoor(lab, host) for host in hosts}


def cluster_database(spec: ClusterSpec, state_dir: Path) -> Env:
    """An Env whose database holds ``spec`` (as ``spec apply`` on the primary would leave it)."""
    from haoscar.commands.apply import apply_spec

    state_dir.mkdir(parents=True, exist_ok=True)
    with open_database(state_dir) as db:
        apply_spec(db, spec)
    return Env(state_dir)


@dataclass
class SlurmLab:
    lab: Lab
    spec: ClusterSpec
    env: Env
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def heads(self) -> list[str]:
        return [self.spec.heads.primary.hostname, self.spec.heads.standby.hostname]

    @property
    def computes(self) -> list[str]:
        return [host for host, record in self.lab.hosts.items() if record.role == "compute"]

    def sync(self, push_key: bool = False) -> slurm.SlurmSyncReport:
        hosts = [*self.heads, *self.computes]
        request = slurm.SyncSlurm(spec_file=str(self.env.state_dir / "cluster.yaml"), push_key=push_key)
        here = self.heads[0]
        return slurm.sync(self.env, request, doors(self.lab, hosts), here, self.lab.host_dir(here))

    def _popen(self, host: str, what: str, command: str) -> subprocess.Popen[bytes]:
        log = self.lab.host_dir(host) / "var/lib/haoscar" / f"{what}.out"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = self.lab.popen(host, ["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.procs[f"{what}@{host}"] = proc
        return proc

    def start_munged(self, host: str) -> None:
        prep = f"mkdir -p /run/munge {MUNGE_DIR} && chown munge:munge /run/munge {MUNGE_DIR} && chmod 0755 /run/munge"
        self.lab.exec(host, ["sh", "-c", prep])
        munged = (
            f"exec setpriv --reuid=munge --regid=munge --init-groups munged -F --key-file={MUNGE_KEY_PATH} "
            f"--socket=/run/munge/munge.socket.2 --pid-file=/run/munge/munged.pid "
            f"--log-file={MUNGE_DIR}/munged.log --seed-file={MUNGE_DIR}/munged.seed"
        )
        self._popen(host, "munged", munged)
        self.wait((self.lab.host_dir(host) / "run/munge/munge.socket.2").exists, 10, f"munged on {host}")

    def start_slurmd(self, host: str) -> None:
        self._popen(host, "slurmd", f"{SLURM_ENV} exec slurmd -D -f {CONF_PATH}")

    def client(self, host: str, command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A Slurm client command (sbatch, squeue, sinfo, scontrol) on ``host``."""
        return self.lab.exec(host, ["sh", "-c", f"export {SLURM_ENV}; {command}"], check=False, timeout=timeout)

    def submit(self, host: str, script: str, sleep: float = 0.0) -> int:
        """sbatch a job that (after ``sleep`` s) appends its id to the compute node's local ``script`` file."""
        body = f"#!/bin/sh\nsleep {sleep:g}\necho $SLURM_JOB_ID >> {script}\n"
        done = self.client(host, f"printf %s {shlex.quote(body)} | sbatch --parsable -o /dev/null")
        if done.returncode != 0:
            raise RuntimeError(f"sbatch on {host} failed: {done.stdout}{done.stderr}")
        return int(done.stdout.strip().split(";")[0])

    def job_ids(self, path: str) -> list[int]:
        """Every id written to ``path`` on the compute nodes (duplicates kept: a job that ran twice shows twice)."""
        ids: list[int] = []
        for host in self.computes:
            local = self.lab.host_dir(host) / path.lstrip("/")
            if local.exists():
                ids += [int(line) for line in local.read_text().split()]
        return ids

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready within {timeout:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_started(self.procs.values())


def start_slurm(lab: Lab, spec: ClusterSpec, spec_file: Path, state_dir: Path) -> SlurmLab:
    """The database from ``spec``, slurm.conf and a new munge key pushed to every host, munged everywhere, slurmd
    on the compute clients. slurmctld is left to the HA daemons (the ``slurmctld`` service)."""
    env = cluster_database(spec, state_dir)
    (state_dir / "cluster.yaml").write_bytes(spec_file.read_bytes())
    run = SlurmLab(lab, spec, env)
    try:
        for head in run.heads:  # the replicated tree of the controller's state exists on both heads
            (lab.host_dir(head) / "var/lib/haoscar/scheduler/slurmctld").mkdir(parents=True, exist_ok=True)
        run.sync(push_key=True)
        for host in [*run.heads, *run.computes]:
            run.start_munged(host)
        for host in run.computes:
            run.start_slurmd(host)
    except BaseException:
        run.stop()
        env.close()
        raise
    return run


def _netns_of(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}/ns/net").stat().st_ino
    except OSError:
        return None


def controllers_by_host(lab: Lab, heads: list[str]) -> dict[str, int]:
    """How many live slurmctld processes each head runs now, seen from the root namespace (by network namespace)."""
    from haoscar.lab import procs

    inodes = {procs.netns_inode(lab.netns_path(head)): head for head in heads}
    found = dict.fromkeys(heads, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if comm == "slurmctld" and state not in ("Z", "X"):
            head = inodes.get(_netns_of(int(entry.name)))
            if head is not None:
                found[head] += 1
    return found


@dataclass
class ControllerSampler:
    """Samples every ``period`` seconds which heads run slurmctld; ``both`` counts the samples with two at once."""

    lab: Lab
    heads: list[str]
    period: float = 0.05
    samples: int = 0
    both: int = 0
    seen_on: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            running = [head for head, count in controllers_by_host(self.lab, self.heads).items() if count]
            self.samples += 1
            self.seen_on.update(running)
            if len(running) > 1:
                self.both += 1
            self._stop.wait(self.period)

    def __enter__(self) -> ControllerSampler:
        self._thread = threading.Thread(target=self._loop, name="slurmctld-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
