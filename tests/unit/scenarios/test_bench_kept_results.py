"""The pure parts of the benches' kept results: the configuration block, the soak's counters, the idle totals,
the result files and the generated table (issue 15)."""

from __future__ import annotations

import datetime
import importlib.resources
import json
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.scenarios.bench.idle import process_name, summarize
from haoscar.scenarios.bench.results import newest_results, result_name, save_result
from haoscar.scenarios.bench.shipped import config_block, shipped_overrides, shipped_services
from haoscar.scenarios.bench.soak import count_events
from haoscar.scenarios.bench.table import END, PUBLISHED, START, render, replace_between_markers
from haoscar.scenarios.ha_lab import ha_spec
from haoscar.spec import ClusterSpec, load_spec
from haoscar.spec.models import Service

MACHINE = {"cpus": 2, "kernel": "Linux 6.1", "python": "3.11.2"}


def lab_spec() -> ClusterSpec:
    with importlib.resources.as_file(importlib.resources.files("haoscar.data") / "lab.yaml") as path:
        return load_spec(path)


def test_the_shipped_configuration_turns_replication_back_on_and_adds_dhcp_and_the_api() -> None:
    spec = lab_spec()
    assert ha_spec(spec).ha.replication is False  # the test harness's own default
    ha = ha_spec(spec, profile="fast", **shipped_overrides(spec)).ha
    assert ha.replication is True
    assert [(s.name, s.kind) for s in ha.services] == [("dhcp", "dnsmasq"), ("api", "status-api")]


def test_shipped_services_keep_the_specs_own_and_add_no_second_of_a_kind() -> None:
    own = [Service(name="mydhcp", kind="dnsmasq"), Service(name="web", start="true")]
    assert [s.name for s in shipped_services(own)] == ["mydhcp", "web", "api"]


def test_the_config_block_says_what_ran() -> None:
    spec = lab_spec()
    ha = ha_spec(spec, profile="fast", **shipped_overrides(spec)).ha
    block = config_block(ha, profile="fast", commit="abc123", hogs=2)
    assert block["profile"] == "fast"
    assert (block["heartbeat_interval_s"], block["dead_time_s"], block["lease_s"]) == (0.1, 0.3, 0.3)
    assert block["replication"] is True
    assert block["services"] == ["dhcp (dnsmasq)", "api (status-api)"]
    assert block["status_api_tls"] is True
    assert block["witness"] == "witness"
    assert block["fencing"] == "lab"
    assert block["git_commit"] == "abc123"
    assert block["haoscar_version"]
    assert "lease" in block["keys"]
    assert block["hogs"] == 2


def event(node: str, kind: str, mono: float, message: str = "", **data: object) -> dict[str, object]:
    return {"node": node, "kind": kind, "mono": mono, "message": message, "data": data}


def test_the_soak_counts_death_declarations_refusals_and_moves_inside_its_window() -> None:
    events = [
        event("head2", "peer", 5.0, "head1 is silent on every network"),  # before the window: start-up
        event("head2", "peer", 12.0, "head1 is silent on every network"),
        event("head2", "peer.ok", 12.5, "peer recovered"),
        event("head2", "lease.denied", 13.0, "head1 is silent on every network but the witness says it holds it"),
        event("head2", "role", 14.0, "standby -> takeover: peer dead", new="takeover", cause="failover"),
        event("head2", "role", 14.5, "takeover -> standby: no lease", new="standby", cause="not-entitled"),
        event("head1", "network.private", 15.0, "no heartbeat from head2 on private: degraded"),
        event("head1", "loop.lag", 16.0, "lag", lag_ms=42.0),
        event("head2", "peer", 30.0, "head1 is silent on every network"),  # after the window: shutdown
    ]
    counted = count_events(events, 10.0, 20.0)
    assert counted["wrongful_death_declarations"] == 1
    assert counted["refused_takeovers"] == 2  # the witness's denial and the not-entitled return to standby
    assert counted["false_failovers"] == 1
    assert counted["death_declarations"] == ["head2: peer head1 is silent on every network"]
    assert counted["loop_lag_records"] == [42.0]
    assert len(counted["role_changes"]) == 2


def test_a_quiet_soak_counts_nothing() -> None:
    events = [event("head1", "role", 11.0, "standby -> active", new="active", cause="start")]
    counted = count_events(events, 10.0, 20.0)
    assert (counted["wrongful_death_declarations"], counted["refused_takeovers"], counted["false_failovers"]) == (
        0,
        0,
        0,
    )


def test_idle_totals_leave_the_managed_services_apart() -> None:
    processes = [
        {"pid": 1, "name": "haoscar.ha", "cpu_pct": 0.5, "rss_mb": 40.0, "pss_mb": 30.0},
        {"pid": 2, "name": "haoscar.ha.apiserver", "cpu_pct": 0.25, "rss_mb": 20.0, "pss_mb": 12.0},
        {"pid": 3, "name": "dnsmasq", "cpu_pct": 0.1, "rss_mb": 2.0, "pss_mb": 1.0},
    ]
    total = summarize(processes)
    assert (total["cpu_pct"], total["rss_mb"], total["pss_mb"], total["processes"]) == (0.75, 60.0, 42.0, 2)
    assert (total["services_cpu_pct"], total["services_rss_mb"]) == (0.1, 2.0)


def test_process_names_show_the_python_module() -> None:
    assert process_name(["/usr/bin/python3", "-m", "haoscar.tlspipe", "serve"]) == "haoscar.tlspipe"
    assert process_name(["/usr/sbin/dnsmasq", "--keep-in-foreground"]) == "dnsmasq"


def test_a_saved_result_holds_the_machine_and_is_never_overwritten(tmp_path: Path) -> None:
    when = datetime.datetime(2026, 12, 3, 12, 30, 5, tzinfo=datetime.UTC)
    path = save_result("soak", {"false_failovers": 0}, tmp_path, note="short run", machine=MACHINE, when=when)
    assert path.name == "soak-20261203T123005Z.json"
    doc = json.loads(path.read_text())
    assert doc["machine"] == MACHINE
    assert doc["note"] == "short run"
    assert doc["result"] == {"false_failovers": 0}
    with pytest.raises(FileExistsError):
        save_result("soak", {}, tmp_path, machine=MACHINE, when=when)


def test_a_bench_name_must_be_a_plain_word() -> None:
    with pytest.raises(UserError, match="bench name"):
        result_name("../soak", datetime.datetime.now(datetime.UTC))


def test_the_newest_file_of_each_bench_is_read(tmp_path: Path) -> None:
    for stamp, value in (("20261201T000000Z", 1), ("20261203T000000Z", 3), ("20261202T000000Z", 2)):
        (tmp_path / f"cluster-failover-{stamp}.json").write_text(json.dumps({"result": {"jobs_lost": value}}))
    (tmp_path / "README.md").write_text("not a result")
    found = newest_results(tmp_path)
    assert list(found) == ["cluster-failover"]
    assert found["cluster-failover"][1]["result"] == {"jobs_lost": 3}


def kept(result: dict[str, object], note: str | None = None) -> dict[str, object]:
    return {"saved_at": "2026-12-03T12:30:05+00:00", "note": note, "machine": MACHINE, "result": result}


def test_the_table_states_a_bound_beside_every_number_and_marks_published_figures() -> None:
    results = {
        "replication": (
            Path("replication-20261203T123005Z.json"),
            kept({"file_lag_p50_s": 0.27, "file_lag_p99_s": 0.38, "files_lost": 0, "db_changes_lost": 0,
                  "loss_bound_s": 1.0, "crash": {"files_missing_within_bound": 3}}),
        ),
        "soak": (
            Path("soak-20261203T123005Z.json"),
            kept({"wrongful_death_declarations": 0, "refused_takeovers": 0, "minutes_per_scenario": 1.0,
                  "false_failovers": 0, "max_loop_lag_ms": 30.5}, note="short run, busy machine"),
        ),
    }  # fmt: skip
    text = render(results)
    rows = [line for line in text.splitlines()[2:]]
    lost = next(r for r in rows if r.startswith("| files / DB changes lost"))
    assert "| 0 / 0 |" in lost
    assert "files acknowledged less than 1 s before the crash are NOT counted (3 of them were missing)" in lost
    soak = next(r for r in rows if r.startswith("| wrongful death declarations"))
    assert "**short run, busy machine**" in soak
    assert "CPU hog and 20 % frame loss" in soak
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), row  # a value, a bound and a source in every row
    published = [r for r in rows if r.endswith("| published |")]
    assert len(published) == len(PUBLISHED)
    assert any("300 s" in r for r in published)
    assert not any("300 s" in r for r in rows if r not in published)
    assert not any(r.startswith("| head crash") for r in rows)  # no failover result, no failover row


def test_a_failover_row_names_its_floor_and_the_configuration_it_ran() -> None:
    config = {"profile": "default and fast", "replication": True, "services": ["dhcp (dnsmasq)", "api (status-api)"]}
    result = {"config": config, "haoscar_default_median_ms": 712.0, "haoscar_fast_median_ms": 250.0,
              "haoscar_fast_vs_keepalived_tuned_ratio": 1.1}  # fmt: skip
    rows = render({"failover": (Path("failover-20261203T123005Z.json"), kept(result))}).splitlines()
    default = next(r for r in rows if r.startswith("| head crash -> alias IP answers (median)"))
    assert "| 712 ms |" in default
    assert "floor 1000 ms" in default and "replication on" in default and "api (status-api)" in default
    fast = next(r for r in rows if r.startswith("| head crash -> alias IP answers, fast profile"))
    assert "ratio to tuned keepalived at 0.1 s 1.1 (floor 1.0)" in fast


def test_the_table_replaces_only_what_lies_between_its_markers() -> None:
    text = f"intro\n{START}\nold table\n{END}\noutro\n"
    assert replace_between_markers(text, "| new |\n") == f"intro\n{START}\n| new |\n{END}\noutro\n"
    assert replace_between_markers("no markers\n", "| new |\n") == "no markers\n"
