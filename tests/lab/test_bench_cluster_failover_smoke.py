"""``haoscar bench cluster-failover`` once, for real: one crash of the active head of a lab cluster running Slurm.

No timing is asserted (the machine is shared; speed is the bench's business): the JSON carries every key a script
reads with sane types, and the correctness results hold: no job acknowledged before the loss bound was lost, none
ran twice, every job running at the crash completed, and slurmctld never ran on both heads; jobs acknowledged
within the bound exist and how many of them were lost is reported.
"""

from __future__ import annotations

import os

import pytest

from haoscar.scenarios.bench.cluster_failover import run_cluster_failover_bench

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

TIMINGS = ("private_alias_ms", "dhcp_ms", "slurm_ready_ms", "first_new_job_ms")


def test_one_crash_of_a_slurm_cluster() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    result = run_cluster_failover_bench(1)
    for key in TIMINGS:
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
        assert result["medians_ms"][key] == result[key]
    assert isinstance(result["jobs_submitted"], int) and result["jobs_submitted"] >= 6
    completed, running = (int(n) for n in result["running_jobs_completed"].split("/"))
    assert running > 0 and completed == running
    assert result["jobs_lost"] == 0 and result["jobs_ran_twice"] == 0
    # Jobs were acknowledged within the loss bound too (the flow up to the crash), and their losses are counted.
    assert result["jobs_within_bound"] > 0
    assert isinstance(result["jobs_lost_within_bound"], int)
    assert 0 <= result["jobs_lost_within_bound"] <= result["jobs_within_bound"]
    assert result["slurmctld_on_both_ms"] == 0
    (run,) = result["runs"]
    assert run["controller_samples"] > 50  # the sampler really watched both heads through the crash
    assert set(result["floors"]) == {"slurm_ready_ms", "jobs_lost", "slurmctld_on_both_ms", "running_jobs_completed"}
    config = result["configuration"]
    assert config["replication"] is True and config["compute_nodes"] == 4
    assert "slurmctld (slurmctld)" in config["services"] and config["profile"] == "default"
