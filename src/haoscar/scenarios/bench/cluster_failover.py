"""``haoscar bench cluster-failover``: what the compute side of a cluster sees when its active head crashes.

Each run brings up a fresh lab (both heads, the witness, 4 compute clients running munged and slurmd), with the
private alias, the netboot group (dnsmasq from the database, the boot server) and slurmctld as HA services and
replication on. Jobs are real ``sbatch`` scripts; each appends its id to a file on its compute node's own disk when
it finishes. All CPUs but one run a long job; a queue of jobs waits on them (``--dependency=afterany``), so one CPU
stays free for the job submitted after the crash. Once the standby holds the controller's state and the jobs are
older than the documented loss bound, more jobs join the queue every ``FLOW_STEP_S`` for ``LOSS_BOUND_S`` + 1 s
(so some are older than the bound at the crash and some younger), and the active head is crashed right after the
last one; from that instant, in parallel:

- ``private_alias_ms``: node01 pings the private alias every 10 ms (``ping -D``); the first reply's timestamp;
- ``dhcp_ms``: node04 asks for a lease (busybox udhcpc, 1 s per try) until the new head's dnsmasq answers;
- ``slurm_ready_ms``: ``squeue`` on node02 through the alias answers; then ``first_new_job_ms``: a job sbatch'ed
  from node03 has written its id.

Afterwards every job acknowledged more than ``LOSS_BOUND_S`` before the crash must have run (``jobs_lost``), each
once (``jobs_ran_twice``); the jobs acknowledged within the bound that never ran are counted too
(``jobs_lost_within_bound`` of ``jobs_within_bound``: allowed, not hidden). Each job writes a token of its own, not
its Slurm id: a new controller that lost the last jobs hands their ids out again. ``ControllerSampler`` counts the
50 ms samples with slurmctld on both heads.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.resources
import os
import re
import shlex
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haoscar.lab.lab import Lab, down_lab
from haoscar.scenarios.cluster_lab import dhcp_lease
from haoscar.scenarios.ha_lab import PROFILES, HaLab, start_ha, wait_until
from haoscar.scenarios.slurm_lab import ControllerSampler, SlurmLab, start_slurm
from haoscar.spec import load_spec
from haoscar.spec.models import ClusterSpec

PRIVATE_ALIAS = "198.18.0.3"
COMPUTES = 4
DHCP_NODE, DHCP_MAC = "node04", "52:54:00:00:01:04"
JOBS = "/var/lib/haoscar/jobs.txt"  # on each compute node's own disk
STATE_DIR = "var/lib/haoscar/scheduler/slurmctld"  # StateSaveLocation, in each head's directory
LONG_JOB_S = 40.0  # still running at the crash, which comes 2 * LOSS_BOUND_S + 1 s or more after it started
# docs/slurm.md: slurmctld saves its state at most every 5 s (SAVE_MAX_WAIT, in whole seconds) and replication
# ships each save after its lag (1 s documented). A job acknowledged within this long before a crash may be lost,
# earlier ones must not be. Measured (scenarios/bench/job_loss.py, 16 crashes): the oldest lost job was 5.1 s old,
# 6.0 and 7.8 s in two crashes while the 2-core machine ran at a load average of ~35.
LOSS_BOUND_S = 8.0
FLOW_STEP_S = 0.5
NEW_JOB_TOKEN = 999  # the job submitted after the crash; those before write 1000, 1001, ...
SERVICES = [
    {"name": "dhcp", "kind": "dnsmasq", "interval": 0.5},
    {"name": "boot", "kind": "bootserver", "interval": 0.5},
    {"name": "slurmctld", "kind": "slurmctld", "interval": 0.5, "timeout": 20},
]
FLOORS = {"slurm_ready_ms": 5000.0, "jobs_lost": 0, "slurmctld_on_both_ms": 0}


def bench_spec(where: Path) -> tuple[ClusterSpec, Path]:
    """The demo lab with 4 compute clients, the private alias, node04's MAC and the three HA services."""
    raw = yaml.safe_load((importlib.resources.files("haoscar.data") / "lab.yaml").read_text())
    raw["clients"][0]["count"] = COMPUTES
    raw["clients"][0]["macs"] = {DHCP_NODE: DHCP_MAC}
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = SERVICES
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path), path


@dataclass
class Queue:
    """The jobs of one run: when sbatch acknowledged each, and which ran at the crash."""

    acked: dict[int, float] = field(default_factory=dict)  # by token
    running: list[int] = field(default_factory=list)  # tokens
    slurm_ids: dict[int, int] = field(default_factory=dict)  # Slurm's id -> token, of the jobs before the crash

    def submit(self, run: SlurmLab, sleep: float, options: str = "") -> int:
        """sbatch a job from node01 that writes its own token; returns its Slurm id."""
        token = 1000 + len(self.acked)
        job = sbatch(run, "node01", sleep, options, token=token)
        self.acked[token] = time.monotonic()
        self.slurm_ids[job] = token
        return job


def sbatch(run: SlurmLab, host: str, sleep: float, options: str = "", token: int | None = None) -> int:
    """Submit a job that writes ``token`` (default: its Slurm id) to ``JOBS`` on its node; returns the Slurm id."""
    mark = "$SLURM_JOB_ID" if token is None else str(token)
    body = f"#!/bin/sh\nsleep {sleep:g}\necho {mark} >> {JOBS}\n"
    done = run.client(host, f"printf %s {shlex.quote(body)} | sbatch --parsable -o /dev/null {options}")
    if done.returncode != 0:
        raise RuntimeError(f"sbatch on {host} failed: {done.stdout}{done.stderr}")
    return int(done.stdout.strip().split(";")[0])


def idle_cpus(run: SlurmLab) -> int:
    """The CPUs of the compute nodes once all of them are idle, else 0."""
    lines = run.client("node01", "timeout 3 sinfo -h -N -o '%N %t %c'", timeout=10).stdout.split("\n")
    nodes = [line.split() for line in lines if line.strip()]
    if len(nodes) != COMPUTES or any(state != "idle" for _, state, _ in nodes):
        return 0
    return sum(int(cpus) for _, _, cpus in nodes)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file of the controller's state (job_state and each job's script and environment), by path."""
    found = {}
    for path in sorted(root.rglob("*")):
        try:
            if path.is_file() and path.name != "heartbeat":  # rewritten every few seconds; no job in it
                found[str(path.relative_to(root))] = path.read_bytes()
        except OSError:  # slurmctld renames its files while it saves
            continue
    return found


def state_on_standby(ha: HaLab, run: SlurmLab, active: str | None = None, standby: str | None = None) -> bool:
    """The active head's replication has nothing pending and the standby holds the same controller state (every
    file: with ``-i`` a job whose script had not arrived is dropped by the new controller)."""
    active, standby = active or ha.primary, standby or ha.standby
    repl = (ha.status(active, timeout=1.0) or {}).get("replication") or {}
    here, there = run.lab.host_dir(active) / STATE_DIR, run.lab.host_dir(standby) / STATE_DIR
    same = (here / "job_state").exists() and _tree(here) == _tree(there)
    # not stale: the witness would refuse the standby a takeover (a lab whose previous HA session moved the role)
    return repl.get("files_pending") == 0 and not repl.get("standby_stale") and same


def fill_queue(ha: HaLab, run: SlurmLab) -> Queue:
    """All CPUs but one running a long job, four jobs queued behind them; returns once the crash may come."""
    cpus = 0
    deadline = time.monotonic() + 60
    while not (cpus := idle_cpus(run)):
        if time.monotonic() > deadline:
            raise RuntimeError("the compute nodes did not register with slurmctld within 60 s")
        time.sleep(0.3)
    queue = Queue()
    first = queue.submit(run, LONG_JOB_S)
    for _ in range(max(cpus - 2, 0)):
        queue.submit(run, LONG_JOB_S)
    for _ in range(4):
        queue.submit(run, 1, f"--dependency=afterany:{first}")
    last = time.monotonic()
    if not wait_until(lambda: state_on_standby(ha, run) and time.monotonic() > last + LOSS_BOUND_S, 60, 0.1):
        raise RuntimeError("the controller's state did not reach the standby within 60 s")
    running = run.client("node02", "squeue -h -t R -o %i").stdout.split()
    queue.running = [queue.slurm_ids[int(i)] for i in running if int(i) in queue.slurm_ids]
    start = time.monotonic()
    for k in range(int((LOSS_BOUND_S + 1) / FLOW_STEP_S) + 1):  # the flow up to the crash
        time.sleep(max(0.0, start + k * FLOW_STEP_S - time.monotonic()))
        queue.submit(run, 1, f"--dependency=afterany:{first}")
    return queue


def alias_ms(lab: Lab, crash_wall: float) -> float:
    cmd = f"ping -D -n -i 0.01 -w 30 {PRIVATE_ALIAS} | grep -m1 'bytes from'"
    out = lab.exec("node01", ["sh", "-c", cmd], check=False, timeout=40).stdout
    found = re.search(r"\[(\d+\.\d+)\]", out)
    if found is None:
        raise RuntimeError(f"the private alias never answered node01 after the crash: {out!r}")
    return (float(found.group(1)) - crash_wall) * 1000


def dhcp_ms(lab: Lab, server: str, crashed: float) -> float:
    deadline = crashed + 30
    while time.monotonic() < deadline:
        if f"server={server}" in dhcp_lease(lab, DHCP_NODE):
            return (time.monotonic() - crashed) * 1000
    raise RuntimeError(f"{DHCP_NODE} got no lease from {server} within 30 s of the crash")


def slurm_ms(run: SlurmLab, crashed: float) -> tuple[float, float]:
    """(squeue answered through the alias, a job submitted then has run), in ms after the crash."""
    if not wait_until(lambda: run.client("node02", "timeout 3 squeue -h", timeout=10).returncode == 0, 60, 0.01):
        raise RuntimeError("squeue did not answer through the private alias within 60 s of the crash")
    ready = (time.monotonic() - crashed) * 1000
    job = sbatch(run, "node03", 0, token=NEW_JOB_TOKEN)
    if not wait_until(lambda: NEW_JOB_TOKEN in run.job_ids(JOBS), 60, 0.05):
        raise RuntimeError(f"job {job}, submitted after the crash, did not run within 60 s")
    return ready, (time.monotonic() - crashed) * 1000


def crash_and_measure(ha: HaLab, run: SlurmLab) -> dict[str, float]:
    server = ha.spec.heads.standby.private_ip
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        crash_wall, crashed = time.time(), time.monotonic()
        ha.lab.crash(ha.primary)
        alias = pool.submit(alias_ms, ha.lab, crash_wall)
        dhcp = pool.submit(dhcp_ms, ha.lab, str(server), crashed)
        slurm = pool.submit(slurm_ms, run, crashed)
        ready, first_job = slurm.result()
        return {
            "private_alias_ms": round(alias.result(), 1),
            "dhcp_ms": round(dhcp.result(), 1),
            "slurm_ready_ms": round(ready, 1),
            "first_new_job_ms": round(first_job, 1),
            "crashed": crashed,
        }


@contextlib.contextmanager
def slurm_cluster(spec: ClusterSpec, spec_file: Path, name: str, where: Path) -> Iterator[tuple[Lab, SlurmLab, HaLab]]:
    """A lab with Slurm on every host and HA with replication on both heads; everything stopped and the lab taken
    down on the way out, also when the start fails half-way (this bench and ``job_loss``)."""
    lab = Lab.up(spec, name, where)
    run: SlurmLab | None = None
    ha: HaLab | None = None
    try:
        run = start_slurm(lab, spec, spec_file, where / "slurm")
        ha = start_ha(lab, spec, replication=True, replication_ack_timeout_s=1.0)
        yield lab, run, ha
    finally:
        if ha is not None:
            ha.stop()
        if run is not None:
            run.stop()
            run.env.close()
        down_lab(name, where)


def one_run(where: Path, name: str) -> dict[str, Any]:
    spec, path = bench_spec(where)
    with slurm_cluster(spec, path, name, where) as (lab, run, ha):
        with ControllerSampler(lab, run.heads) as sampler:
            queue = fill_queue(ha, run)
            measured = crash_and_measure(ha, run)
            crashed = measured.pop("crashed")
            wait_until(lambda: settled(run, queue), 120, 0.5)
        return tally(run, queue, crashed, measured, sampler)


def settled(run: SlurmLab, queue: Queue) -> bool:
    """Every job ran, or the controller has no job left (the others were lost)."""
    if set(queue.acked) <= set(run.job_ids(JOBS)):
        return True
    listed = run.client("node02", "timeout 3 squeue -h -o %i", timeout=10)
    return listed.returncode == 0 and not listed.stdout.strip()


def tally(
    run: SlurmLab, queue: Queue, crashed: float, measured: dict[str, float], sampler: ControllerSampler
) -> dict[str, Any]:
    ids = run.job_ids(JOBS)
    old = [job for job, at in queue.acked.items() if at < crashed - LOSS_BOUND_S]
    young = [job for job in queue.acked if job not in old]
    return {
        **measured,
        "jobs_submitted": len(queue.acked) + 1,
        "jobs_within_bound": len(young),
        "jobs_lost_within_bound": len(set(young) - set(ids)),
        "jobs_lost": len(set(old) - set(ids)),
        "jobs_ran_twice": len(ids) - len(set(ids)),
        "running_at_crash": len(queue.running),
        "running_completed": len(set(queue.running) & set(ids)),
        "slurmctld_on_both_ms": round(sampler.both * sampler.period * 1000, 1),
        "controller_samples": sampler.samples,
    }


def configuration() -> dict[str, Any]:
    return {
        "profile": "default",
        "timers": PROFILES["default"],
        "services": [f"{s['name']} ({s['kind']})" for s in SERVICES],
        "replication": True,
        "compute_nodes": COMPUTES,
        "private_alias": PRIVATE_ALIAS,
        "loss_bound_s": LOSS_BOUND_S,
        "flow_step_s": FLOW_STEP_S,
        "long_job_s": LONG_JOB_S,
        "sampler_period_ms": 50,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    timings = ("private_alias_ms", "dhcp_ms", "slurm_ready_ms", "first_new_job_ms")
    result: dict[str, Any] = {key: round(statistics.median(r[key] for r in runs), 1) for key in timings}
    for key in ("jobs_submitted", "jobs_lost", "jobs_ran_twice", "jobs_within_bound", "jobs_lost_within_bound"):
        result[key] = sum(r[key] for r in runs)
    completed, running = sum(r["running_completed"] for r in runs), sum(r["running_at_crash"] for r in runs)
    result["running_jobs_completed"] = f"{completed}/{running}"
    result["slurmctld_on_both_ms"] = max(r["slurmctld_on_both_ms"] for r in runs)
    result["medians_ms"] = {key: result[key] for key in timings}
    result["runs"] = runs
    result["floors"] = {
        "slurm_ready_ms": {"value": result["slurm_ready_ms"], "limit": FLOORS["slurm_ready_ms"]},
        "jobs_lost": {"value": result["jobs_lost"], "limit": FLOORS["jobs_lost"]},
        "slurmctld_on_both_ms": {"value": result["slurmctld_on_both_ms"], "limit": FLOORS["slurmctld_on_both_ms"]},
        "running_jobs_completed": {"value": completed, "limit": running},
    }
    for name, floor in result["floors"].items():
        floor["pass"] = (
            floor["value"] >= floor["limit"] if name == "running_jobs_completed" else (floor["value"] <= floor["limit"])
        )
    result["configuration"] = configuration()
    return result


def run_cluster_failover_bench(runs: int, note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """``runs`` crashes, each on a fresh lab; per-run values, medians (timings) or sums (jobs) and the floors."""
    results = []
    for n in range(runs):
        note(f"run {n + 1}/{runs}")
        # A short state directory: the daemons' control sockets live under it (a UNIX socket path has 108 bytes).
        where = Path(tempfile.mkdtemp(prefix="hc", dir="/tmp"))
        try:
            results.append(one_run(where, f"cf{os.getpid() % 100000}-{n}"[:12]))
        finally:
            shutil.rmtree(where, ignore_errors=True)
    return summarize(results)
