"""The ``chrony`` HA service kind: its configuration (bound to the compute-facing address, never touching the
head's clock) and the NTP answer its health check accepts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haoscar.events import EventBus
from haoscar.ha.services import build_service
from haoscar.ha.services.base import ResourceError, ServiceEnv
from haoscar.ha.services.chrony import ChronyService, ntp_answer, ntp_request, render_chrony_conf
from haoscar.lab.defaults import default_spec
from haoscar.spec.models import Service
from haoscar.spec.topology import compute_facing_address


def reply(leap: int, mode: int, stratum: int, transmit: bytes = b"\x01\x02\x03\x04") -> bytes:
    return bytes([leap << 6 | 4 << 3 | mode, stratum]) + bytes(38) + transmit + bytes(4)


def test_the_config_binds_the_address_serves_the_private_network_and_has_no_control_socket(tmp_path: Path) -> None:
    text = render_chrony_conf("198.18.0.3", "198.18.0.0/24", tmp_path)
    lines = text.splitlines()
    assert "bindaddress 198.18.0.3" in lines and "allow 198.18.0.0/24" in lines
    assert "local stratum 10" in lines and "cmdport 0" in lines
    assert "ratelimit interval 1 burst 16 leak 2" in lines  # a limit on the listener
    assert f"pidfile {tmp_path}/chronyd.pid" in lines


def test_the_health_check_takes_only_a_synchronised_server_answer() -> None:
    assert ntp_request()[0] & 7 == 3  # a client request
    assert len(ntp_request()) == 48
    assert ntp_answer(reply(0, 4, 10)) is None
    assert "not synchronised" in str(ntp_answer(reply(3, 4, 10)))
    assert "not synchronised" in str(ntp_answer(reply(0, 4, 16)))
    assert "mode 3" in str(ntp_answer(reply(0, 3, 10)))
    assert "transmit" in str(ntp_answer(reply(0, 4, 10, bytes(4))))
    assert "byte" in str(ntp_answer(b"\x24"))


def test_chronyd_never_controls_the_heads_clock_and_serves_on_the_compute_facing_address(tmp_path: Path) -> None:
    spec = default_spec()
    env = ServiceEnv(spec.heads.primary.hostname, tmp_path, EventBus("head1"), spec=spec)
    service = build_service(Service(name="ntp", kind="chrony"), env)
    assert isinstance(service, ChronyService)
    assert service.spec.start is not None and " -x " in service.spec.start  # -x: the clock is never changed
    assert service.address == str(compute_facing_address(spec))


def test_on_a_host_that_is_no_head_the_start_fails_with_the_reason(tmp_path: Path) -> None:
    env = ServiceEnv("node01", tmp_path, EventBus("node01"), spec=default_spec())
    service = build_service(Service(name="ntp", kind="chrony"), env)
    with pytest.raises(ResourceError, match="not a head"):
        asyncio.run(service.start())
