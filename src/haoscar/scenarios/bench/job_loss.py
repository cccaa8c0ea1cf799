"""How old must a job be to survive a crash of the active head? The measurement behind docs/slurm.md's job-loss
bound and bench cluster-failover's ``LOSS_BOUND_S``.

Each trial brings up a fresh lab (both heads, the witness, 2 compute clients, the private alias, slurmctld as
the HA service, replication on), waits until the controller answers, then submits a held job (``sbatch --hold``:
it stays in the queue, so "known to the controller" is all that is asked) every ``step_s`` for ``flow_s``
seconds and crashes the active head right after the last acknowledgement. Each job's age is the time from its
``sbatch`` acknowledgement to the crash (one monotonic clock: the lab shares the machine's). Once ``squeue``
answers through the private alias, a job is *kept* when the new controller lists it pending, *lost* otherwise
(unknown, or dropped by ``slurmctld -i`` because its script or its record had not arrived). The ages of the last
``job_state`` save on the crashed head and of the one the standby held split a loss into slurmctld's own delay
and the replication lag. A steady flow is the
worst case for replication: slurmctld saves its state again and again, so a path that waits for quiet never ships.

    python -m haoscar.scenarios.bench.job_loss --runs 6 [--flow-s 5] [--step-s 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from haoscar.scenarios.bench.cluster_failover import PRIVATE_ALIAS, STATE_DIR, slurm_cluster, state_on_standby
from haoscar.scenarios.ha_lab import HaLab, wait_until
from haoscar.scenarios.slurm_lab import SlurmLab
from haoscar.spec import load_spec


def loss_spec(where: Path) -> Path:
    from importlib.resources import files

    raw = yaml.safe_load((files("haoscar.data") / "lab.yaml").read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = [{"name": "slurmctld", "kind": "slurmctld", "interval": 0.5, "timeout": 20}]
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def held_job(run: SlurmLab) -> int:
    done = run.client("node01", "printf '#!/bin/sh\\ntrue\\n' | sbatch --parsable --hold -o /dev/null")
    if done.returncode != 0:
        raise RuntimeError(f"sbatch failed: {done.stdout}{done.stderr}")
    return int(done.stdout.strip().split(";")[0])


def save_ages(ha: HaLab, crash_wall: float) -> dict[str, float | None]:
    """How old, at the crash, the last ``job_state`` save was on the crashed head and the one the standby held (the
    file's mtime: rsync keeps it), read before the new controller saves anything."""
    ages: dict[str, float | None] = {}
    for key, head in (("active_save_age_s", ha.primary), ("standby_save_age_s", ha.standby)):
        try:
            mtime = (ha.lab.host_dir(head) / STATE_DIR / "job_state").stat().st_mtime
        except FileNotFoundError:
            ages[key] = None
            continue
        ages[key] = round(crash_wall - mtime, 3)
    return ages


def flow_then_crash(
    ha: HaLab, run: SlurmLab, flow_s: float, step_s: float
) -> tuple[dict[int, float], set[int], dict[str, float | None]]:
    """(age at the crash of every acknowledged job, the ids the new controller lists pending, the saves' ages)."""
    acked: dict[int, float] = {}
    start = time.monotonic()
    for k in range(int(flow_s / step_s) + 1):
        time.sleep(max(0.0, start + k * step_s - time.monotonic()))
        job = held_job(run)
        acked[job] = time.monotonic()
    crashed, crash_wall = time.monotonic(), time.time()
    ha.lab.crash(ha.primary)
    saves = save_ages(ha, crash_wall)
    ok = run.client("node02", "timeout 3 squeue -h", timeout=10).returncode == 0
    if not ok and not wait_until(lambda: run.client("node02", "timeout 3 squeue -h", timeout=10).returncode == 0, 60):
        raise RuntimeError("squeue did not answer through the private alias within 60 s of the crash")
    known = {int(i) for i in run.client("node02", "squeue -h -t PD -o %i").stdout.split()}
    return {job: crashed - at for job, at in acked.items()}, known, saves


def settle(ha: HaLab, run: SlurmLab) -> None:
    """The controller answers, has saved once, and the standby holds that state: the flow starts replicated."""
    if not wait_until(lambda: run.client("node01", "timeout 3 sinfo -h", timeout=10).returncode == 0, 60, 0.2):
        raise RuntimeError("the controller did not answer within 60 s")
    held_job(run)
    if not wait_until(lambda: state_on_standby(ha, run), 60, 0.1):
        raise RuntimeError("the controller's state did not reach the standby within 60 s")


def trial(where: Path, name: str, flow_s: float, step_s: float) -> dict[str, Any]:
    path = loss_spec(where)
    with slurm_cluster(load_spec(path), path, name, where) as (_lab, run, ha):
        settle(ha, run)
        ages, known, saves = flow_then_crash(ha, run, flow_s, step_s)
        lost = sorted(ages[job] for job in ages if job not in known)
        kept = sorted(ages[job] for job in ages if job in known)
        return {
            "jobs": len(ages),
            "lost": len(lost),
            "oldest_lost_s": round(max(lost), 3) if lost else None,
            "youngest_kept_s": round(min(kept), 3) if kept else None,
            **saves,
            "ages_lost_s": [round(a, 3) for a in lost],
            "ages_kept_s": [round(a, 3) for a in kept],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flow-s", type=float, default=5.0)
    parser.add_argument("--step-s", type=float, default=0.25)
    args = parser.parse_args()
    results = []
    for n in range(args.runs):
        where = Path(tempfile.mkdtemp(prefix="jl", dir="/tmp"))
        try:
            results.append(trial(where, f"jl{os.getpid() % 100000}-{n}"[:12], args.flow_s, args.step_s))
        finally:
            shutil.rmtree(where, ignore_errors=True)
        print(json.dumps(results[-1]), flush=True)
    lost = [r["oldest_lost_s"] for r in results if r["oldest_lost_s"] is not None]
    print(json.dumps({"runs": len(results), "oldest_lost_s": max(lost) if lost else None}))


if __name__ == "__main__":
    main()
