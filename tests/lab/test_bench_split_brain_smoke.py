"""``haoscar bench split-brain`` once, for real, shortened: the heads cut from each other for 2 s, haoscar and
keepalived on the same lab.

No timing is asserted. What is asserted is a correctness property: haoscar never has two owners of the VIP (the
witness lease keeps the standby from taking over while the active head renews it), and the JSON carries what a
script reads, for both systems.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import down_lab
from haoscar.scenarios.bench.split_brain import SplitBrainOptions, run_split_brain_bench
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

CASE_KEYS = (
    "two_owner_ms",
    "two_owner_during_fault_ms",
    "two_owner_after_heal_ms",
    "max_owners",
    "client_replies_by_head",
    "client_answering_sequence",
    "client_arp_senders",
    "client_arp_cache_sequence",
    "sample_period_ms",
)


def test_heads_partitioned_haoscar_never_has_two_owners() -> None:
    spec = default_spec()
    name = unique_lab_name("sb")
    # A short state directory: the daemons' control sockets live under it, and a UNIX socket path has 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="hs", dir="/tmp"))
    options = SplitBrainOptions(scenarios=("heads_partitioned",), fault_s=2.0, recovery_s=1.0, lab_name=name)
    try:
        result = run_split_brain_bench(spec, state, options)
        assert not (state / "labs" / name).exists()
    finally:
        down_lab(name, state)  # the bench takes its lab down itself; this only guards against a bug in that
        shutil.rmtree(state, ignore_errors=True)
    primary, standby = spec.heads.primary.hostname, spec.heads.standby.hostname
    assert set(result["two_owner_ms"]) == {"heads_partitioned"}
    assert set(result["two_owner_ms"]["heads_partitioned"]) == {"haoscar", "keepalived"}
    assert result["config"]["profile"] == "default"
    for system in ("haoscar", "keepalived"):
        case = result["scenarios"]["heads_partitioned"][system]
        for key in CASE_KEYS:
            assert key in case, f"{system}: missing {key}"
        assert isinstance(case["two_owner_ms"], float) and case["two_owner_ms"] >= 0.0
        assert case["samples"] > 100
        assert case["client_replies_by_head"]  # the public client was answered on the VIP throughout
    haoscar = result["scenarios"]["heads_partitioned"]["haoscar"]
    assert haoscar["two_owner_ms"] == 0.0 and haoscar["max_owners"] == 1
    assert result["haoscar_two_owner_total_ms"] == 0.0
    # the heads still reach the witness: the active head keeps the VIP, the client is answered by it alone
    assert haoscar["client_answering_sequence"] == [primary]
    assert standby not in haoscar["client_replies_by_head"]
