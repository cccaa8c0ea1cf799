"""What the benches compare against and how they count: keepalived's tuned configuration, two-owner time."""

from __future__ import annotations

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.bench.keepalived_peer import render_config, vrrp_peers
from haoscar.scenarios.bench.split_brain import _two_owner_s
from haoscar.scenarios.owner_sampler import Sample


def test_tuned_keepalived_has_close_priorities_backup_start_and_nopreempt() -> None:
    primary, standby = vrrp_peers(default_spec())
    assert (primary.priority, standby.priority) == (254, 253)
    text = render_config(primary, "198.19.0.10", 24, 0.1)
    assert "state BACKUP" in text and "nopreempt" in text and "priority 254" in text
    assert "vrrp_version 3" in text and "advert_int 0.1" in text
    assert "priority 253" in render_config(standby, "198.19.0.10", 24, 0.05)


def test_untuned_keepalived_is_the_sample_configuration() -> None:
    primary, standby = vrrp_peers(default_spec(), tuned=False)
    assert (primary.priority, primary.state, standby.priority, standby.state) == (150, "MASTER", 100, "BACKUP")
    text = render_config(primary, "198.19.0.10", 24, 1.0)
    assert "nopreempt" not in text and "vrrp_version" not in text


def _sample(t: float, *owners: str) -> Sample:
    return Sample(t, frozenset(owners), frozenset(owners), None)


def test_two_owner_time_counts_only_samples_with_two_owners_inside_the_window() -> None:
    samples = [_sample(0.0, "a"), _sample(1.0, "a", "b"), _sample(1.5, "b"), _sample(2.0, "a", "b"), _sample(3.0)]
    assert _two_owner_s(samples, 0.0, 10.0) == 1.5
    assert _two_owner_s(samples, 0.0, 2.0) == 0.5
    assert _two_owner_s(samples, 2.0, 2.5) == 0.5
