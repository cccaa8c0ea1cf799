"""Both aliases move together: ``VipSet`` adds, drops, probes and announces the public and the private alias."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from haoscar.ha.config import node_config
from haoscar.ha.vip import Vip, VipSet, vips_for
from haoscar.spec.models import ClusterSpec

LAB = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"


class FakeVip:
    def __init__(self, address: str, holder: str | None = None, fail_remove: bool = False) -> None:
        self.address = IPv4Address(address)
        self.holder = holder
        self.fail_remove = fail_remove
        self.calls: list[str] = []

    def add(self) -> None:
        self.calls.append("add")

    def remove(self) -> bool:
        self.calls.append("remove")
        if self.fail_remove:
            raise OSError("interface eth0 not found")
        return True

    def present(self) -> bool:
        return False

    def announce(self, count: int = 3, gap: float = 0.02) -> None:
        self.calls.append(f"announce{count}")

    async def probe(self, timeout: float) -> str | None:
        return self.holder

    def close(self) -> None:
        self.calls.append("close")


def vip_set(*fakes: FakeVip) -> VipSet:
    return VipSet(list(fakes))  # type: ignore[arg-type]


def test_both_aliases_are_added_announced_and_dropped_together() -> None:
    public, private = FakeVip("198.19.0.10"), FakeVip("198.18.0.3")
    vips = vip_set(public, private)
    assert vips.address == IPv4Address("198.19.0.10")  # what messages name
    vips.add()
    vips.announce(2, gap=0)
    assert vips.remove() is True
    assert public.calls == private.calls == ["add", "announce1", "announce1", "remove"]


def test_a_takeover_announces_each_alias_right_after_its_own_add_the_public_first() -> None:
    public, private = FakeVip("198.19.0.10"), FakeVip("198.18.0.3")
    calls: list[str] = []
    public.calls = private.calls = calls  # one list: the order across both aliases
    vip_set(public, private).bring_up(lambda step: calls.append(f"step {step}"))
    assert calls == ["add", "step vip_added", "announce1", "step garp_sent", "add", "announce1"]


def test_a_holder_of_either_alias_is_found_by_the_probe() -> None:
    assert asyncio.run(vip_set(FakeVip("198.19.0.10"), FakeVip("198.18.0.3")).probe(0.01)) is None
    held = vip_set(FakeVip("198.19.0.10"), FakeVip("198.18.0.3", holder="52:54:00:00:00:01"))
    assert asyncio.run(held.probe(0.01)) == "52:54:00:00:00:01"


def test_one_failing_removal_still_drops_the_other_then_raises() -> None:
    public, private = FakeVip("198.19.0.10", fail_remove=True), FakeVip("198.18.0.3")
    with pytest.raises(OSError, match="not found"):
        vip_set(public, private).remove()
    assert private.calls == ["remove"]


def spec(private_alias: str | None) -> ClusterSpec:
    raw: dict[str, Any] = yaml.safe_load(LAB.read_text())
    if private_alias:
        for head in raw["heads"].values():
            head["private_alias_ip"] = private_alias
    return ClusterSpec.model_validate(raw)


def test_vips_for_a_head_follow_the_spec() -> None:
    with_alias = vips_for(node_config(spec("198.18.0.3"), "head2"))
    assert [(v.ifname, str(v.address), str(v.own_ip)) for v in with_alias.vips] == [
        ("eth1", "198.19.0.10", "198.19.0.12"),
        ("eth0", "198.18.0.3", "198.18.0.2"),
    ]
    without = vips_for(node_config(spec(None), "head1"))
    assert [type(v) for v in without.vips] == [Vip] and str(without.address) == "198.19.0.10"
    for vips in (with_alias, without):
        vips.close()
