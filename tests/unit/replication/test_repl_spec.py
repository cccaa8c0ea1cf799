"""Replicated paths in the spec: absolute, inside the allowed roots, present on the head; stale-takeover rules."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.replication.config import prepare_trees, repl_config
from haoscar.replication.state import PersistedState, may_take_over
from haoscar.spec import check_text

LAB = (files("haoscar") / "data" / "lab.yaml").read_text()


def with_ha(extra: str) -> str:
    return LAB.replace("  failback: manual\n", "  failback: manual\n" + extra)


def test_defaults_replicate_home_config_images_and_scheduler(tmp_path: Path) -> None:
    spec, problems = check_text(LAB)
    assert spec is not None and not problems
    cfg = repl_config(spec, "head1", tmp_path)
    assert [str(t.path) for t in cfg.trees] == [
        "/home", "/etc/haoscar", "/var/lib/haoscar/images", "/var/lib/haoscar/scheduler", "/var/lib/haoscar/ssh",
    ]  # fmt: skip
    assert cfg.trees[-1].excludes == ("/mux/",)  # the live ssh control sockets stay each head's own
    assert (str(cfg.local_ip), str(cfg.peer_ip)) == ("198.18.1.1", "198.18.1.2")  # the heartbeat link


def test_a_path_outside_the_allowed_roots_is_a_spec_error() -> None:
    _, problems = check_text(with_ha("  replicate:\n    - path: /usr/lib\n"))
    assert [p.path for p in problems] == ["ha.replicate[0].path"]
    assert "outside the allowed roots" in problems[0].message and "replicate_roots" in problems[0].message


def test_relative_and_unnormalised_paths_are_spec_errors() -> None:
    _, problems = check_text(with_ha("  replicate:\n    - path: home\n    - path: /home/../etc\n"))
    messages = {p.path: p.message for p in problems}
    assert "not an absolute path" in messages["ha.replicate[0].path"]
    assert "not normalised" in messages["ha.replicate[1].path"]


def test_replication_ports_must_not_clash() -> None:
    _, problems = check_text(with_ha("  replication_port: 7404\n"))
    assert [p.path for p in problems] == ["ha.replication_port"]


def test_the_state_directory_inside_a_tree_is_never_shipped_by_rsync(tmp_path: Path) -> None:
    spec, _ = check_text(with_ha("  replicate:\n    - path: /var/lib/haoscar\n      exclude: ['*.tmp']\n"))
    assert spec is not None
    tree = repl_config(spec, "head2", Path("/var/lib/haoscar")).trees[0]
    assert "*.tmp" in tree.excludes and "/haoscar.db" in tree.excludes and "/replication/" in tree.excludes


def test_a_replicated_path_missing_on_the_head_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nothere"
    spec, _ = check_text(with_ha(f"  replicate_roots: ['{tmp_path}']\n  replicate:\n    - path: {missing}\n"))
    assert spec is not None
    with pytest.raises(UserError, match=f"replicated path {missing} does not exist"):
        prepare_trees(repl_config(spec, "head1", tmp_path))


def test_a_stale_head_refuses_takeover_unless_forced() -> None:
    assert may_take_over(PersistedState(), force=False) == (True, "replicated data is current")
    stale = PersistedState(standby_stale=True, stale_reason="standby unreachable", stale_since=0.0)
    allowed, why = may_take_over(stale, force=False)
    assert not allowed and "STALE" in why and "standby unreachable" in why and "--force" in why
    allowed, why = may_take_over(stale, force=True)
    assert allowed and why.startswith("FORCED")


def test_the_stale_mark_survives_a_restart(tmp_path: Path) -> None:
    PersistedState(standby_stale=True, stale_reason="disk full", stale_since=1.0).save(tmp_path)
    assert PersistedState.load(tmp_path).standby_stale
