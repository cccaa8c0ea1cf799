"""The demo's cluster act (issue 11): Slurm keeps scheduling through a crash of the active head.

The demo lab gets the private alias and ``slurmctld`` as its HA service (the same hosts: neither changes the lab's
layout), munged on every host and slurmd on the compute clients, HA with replication. Jobs are submitted, the queue
is shown, the active head crashes, and the queue is shown again once the new head's controller answers.

Where the queue is read: the controller listens on the private alias, which the public client cannot reach (the
private network is closed to it, as the reachability act proves). So the queue is shown with ``squeue`` run on the
new active head (``Lab.exec``), asking the controller at the private alias exactly as a compute node does.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.cluster_failover import JOBS, sbatch, state_on_standby
from haoscar.scenarios.ha_lab import HaLab, dump_spec, start_ha, wait_until
from haoscar.scenarios.slurm_lab import ControllerSampler, SlurmLab, start_slurm
from haoscar.spec.models import ClusterSpec

PRIVATE_ALIAS = "198.18.0.3"
QUEUE = "squeue -o '%.5i %.9P %.8j %.2t %.8M %R'"


def slurm_spec(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with the private alias on both heads and ``slurmctld`` as the HA service (validated again)."""
    raw = spec.model_dump(mode="json", exclude_none=True)
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = [{"name": "slurmctld", "kind": "slurmctld", "interval": 0.5, "timeout": 20}]
    return ClusterSpec.model_validate(raw)


def start_session(lab: Lab, cluster: ClusterSpec) -> tuple[HaLab, str, str]:
    """HA with replication on the demo lab: (ha, the active head, the standby). The roles are read, not assumed: on
    a lab where an earlier act crashed a head, that head's copy was marked stale while it was down, and the witness
    gives the role to the head whose data is current, which may be the spec's standby."""
    ha = start_ha(lab, cluster, wait=False, replication=True, replication_ack_timeout_s=1.0)
    heads = (ha.primary, ha.standby)

    def states() -> dict[str, str]:
        return {head: str((ha.status(head, timeout=0.5) or {}).get("state")) for head in heads}

    try:
        if not wait_until(lambda: sorted(states().values()) == ["active", "standby"], 30, 0.2):
            raise RuntimeError(f"no active and standby head within 30 s: {states()}")
    except BaseException:
        ha.stop()
        raise
    active = next(head for head, state in states().items() if state == "active")
    return ha, active, next(head for head in heads if head != active)


def restore_crashed(lab: Lab, cluster: ClusterSpec) -> None:
    for head in (cluster.heads.primary.hostname, cluster.heads.standby.hostname):
        if lab.host(head).state == "crashed":
            lab.restore(head)


def in_sync(ha: HaLab, active: str) -> bool:
    """The standby may take over: replication has nothing pending and the standby was told its copy is current,
    which the active head does only once the witness dropped its mark (``confirmed_current``)."""
    repl = (ha.status(active, timeout=1.0) or {}).get("replication") or {}
    current = not repl.get("standby_stale") and bool(repl.get("confirmed_current"))
    return repl.get("files_pending") == 0 and current and bool(repl.get("db_connected"))


def rejoin(ha: HaLab, crashed: str, active: str) -> None:
    """The crashed head boots and rejoins as standby until the new active head has synced it (its copy is no
    longer marked stale), as an administrator would bring it back: the next HA session of the demo's lab then
    starts from two current heads (a head left stale keeps the role away from itself at the next start)."""
    ha.lab.restore(crashed)
    ha.start_daemon(crashed)
    wait_until(lambda: (ha.status(crashed, timeout=0.5) or {}).get("state") == "standby", 20, 0.2)
    wait_until(lambda: in_sync(ha, active), 60, 0.2)


def _queue(console: Console, run: SlurmLab, head: str, title: str) -> bool:
    done = run.client(head, f"timeout 5 {QUEUE}", timeout=15)
    console.print(f"[bold]{title}[/] (squeue on {head}, through the private alias {PRIVATE_ALIAS}):")
    console.print(done.stdout.rstrip() or done.stderr.rstrip(), markup=False, highlight=False)
    return done.returncode == 0


def _submit(ha: HaLab, run: SlurmLab, active: str, standby: str) -> list[int]:
    """Two jobs per compute client, each running 6 s, and two queued behind the first; once the controller's
    state is on the standby (docs/slurm.md: the loss bound)."""
    if not wait_until(lambda: run.client(run.computes[0], "timeout 3 sinfo -h").returncode == 0, 60, 0.3):
        raise RuntimeError("slurmctld did not answer within 60 s")
    time.sleep(2.0)  # slurmd registration after the controller's first `scontrol reconfigure`
    jobs = [sbatch(run, run.computes[0], 6) for _ in run.computes]
    jobs += [sbatch(run, run.computes[0], 1, f"--dependency=afterany:{jobs[0]}") for _ in range(2)]
    last = time.monotonic()
    wait_until(lambda: state_on_standby(ha, run, active, standby) and time.monotonic() > last + 3.0, 30, 0.1)
    return jobs


def run_cluster_act(lab: Lab, spec: ClusterSpec, console: Console) -> dict[str, Any]:
    """Returns what was measured: squeue back after the crash (ms), jobs submitted and run, samples with two
    controllers. The crashed head is restored at the end, so later acts find the lab whole."""
    console.rule("[bold]The cluster through a head crash: Slurm's controller behind the private alias")
    cluster = slurm_spec(spec)
    work = Path(tempfile.mkdtemp(prefix="hd", dir="/tmp"))
    (work / "cluster.yaml").write_text(dump_spec(cluster))
    run = start_slurm(lab, cluster, work / "cluster.yaml", work / "slurm")
    ha: HaLab | None = None
    try:
        ha, active, standby = start_session(lab, cluster)
        with ControllerSampler(lab, run.heads) as sampler:
            jobs = _submit(ha, run, active, standby)
            _queue(console, run, active, "The queue before the crash")
            console.print(f"[bold]Crashing the active head {active}[/] with these jobs running and queued...")
            crashed = time.monotonic()
            lab.crash(active)
            ready = wait_until(lambda: run.client(standby, "timeout 3 squeue -h").returncode == 0, 60, 0.05)
            ready_ms = round((time.monotonic() - crashed) * 1000) if ready else None
            _queue(console, run, standby, f"The queue {ready_ms} ms after the crash")
            wait_until(lambda: set(jobs) <= set(run.job_ids(JOBS)), 90, 0.5)
            _queue(console, run, standby, "The queue once the jobs finished")
        console.print(f"{active} boots again and rejoins as standby; {standby} syncs it")
        rejoin(ha, active, standby)
        ran = run.job_ids(JOBS)
        console.print(
            f"jobs submitted {len(jobs)}, ran {len(set(ran) & set(jobs))}, ran twice {len(ran) - len(set(ran))}"
        )
        return {
            "ready_ms": ready_ms,
            "submitted": jobs,
            "ran": ran,
            "both_samples": sampler.both,
            "samples": sampler.samples,
            "primary": active,
            "standby": standby,
        }
    finally:
        if ha is not None:
            ha.stop()
        run.stop()
        run.env.close()
        restore_crashed(lab, cluster)
        shutil.rmtree(work, ignore_errors=True)
