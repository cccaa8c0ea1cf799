"""The owner sampler every "one owner throughout" check relies on: it must see two owners when there are two."""

from __future__ import annotations

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.ha_lab import HaLab, wait_until
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.owner_sampler import OwnerSampler

pytestmark = pytest.mark.lab


def test_the_sampler_sees_no_owner_one_owner_and_two_owners(make_lab: MakeLab) -> None:
    spec = default_spec()
    ha = HaLab(make_lab(spec), spec, b"k" * 32)  # no daemons: the alias IP is set by hand
    primary, standby = spec.heads.primary, spec.heads.standby
    vip = f"{spec.heads.primary.alias_ip}/32"

    def vip_on(head: str, iface: str, op: str) -> None:
        ha.lab.exec(head, ["ip", "addr", op, vip, "dev", iface])

    with OwnerSampler(ha) as sampler:
        assert sampler.sample_once().reachable == frozenset()
        vip_on(primary.hostname, primary.public_interface, "add")
        assert sampler.sample_once().reachable == {primary.hostname}
        vip_on(standby.hostname, standby.public_interface, "add")
        assert sampler.sample_once().reachable == {primary.hostname, standby.hostname}
        # The background samples (every 10 ms) record it too: the state is held until they have.
        assert wait_until(lambda: sampler.max_owners() == 2, 5)
        vip_on(primary.hostname, primary.public_interface, "del")
        assert sampler.sample_once().reachable == {standby.hostname}
        ha.lab.link(standby.hostname, standby.public_interface, False)
        seen = sampler.sample_once()
        assert seen.configured == {standby.hostname} and seen.reachable == frozenset()
    assert sampler.max_owners() == 2 and sampler.double_ownership_s() > 0
