"""The ``web`` service kind: the console as a resource of the active head, bound to its public alias (the lab test
tests/lab/test_web_console_ha.py shows it following the alias across a failover)."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest

from haoscar.events import EventBus
from haoscar.ha.services import ResourceError, ServiceEnv, build_service
from haoscar.ha.services.web import WebConsoleService
from haoscar.spec.models import ClusterSpec, Service


def cluster() -> ClusterSpec:
    head = {"private_interface": "eth0", "alias_ip": "198.19.0.10", "netmask": "255.255.255.0"}
    return ClusterSpec.model_validate(
        {
            "cluster": {"name": "c"},
            "networks": {"private": {"subnet": "198.18.0.0/24"}, "public": {"subnet": "198.19.0.0/24"}},
            "heads": {
                "primary": {**head, "hostname": "head1", "private_ip": "198.18.0.1", "public_ip": "198.19.0.11"},
                "standby": {**head, "hostname": "head2", "private_ip": "198.18.0.2", "public_ip": "198.19.0.12"},
            },
            "ha": {"services": [{"name": "console", "kind": "web", "port": 9443}]},
        }
    )


def _service(tmp_path: Path, node: str) -> WebConsoleService:
    spec = cluster()
    env = ServiceEnv(node=node, state_dir=tmp_path / "state", bus=EventBus(node), spec=spec)
    built = build_service(spec.ha.services[0], env)
    assert isinstance(built, WebConsoleService)
    return built


@pytest.mark.parametrize("node", ["head1", "head2"])
def test_each_head_serves_the_console_on_the_public_alias(tmp_path: Path, node: str) -> None:
    svc = _service(tmp_path, node)
    assert svc.spec.start is not None
    argv = shlex.split(svc.spec.start)
    assert argv[1:] == ["-m", "haoscar", "--state-dir", str(tmp_path / "state"), "web", "serve",
                        "--bind", "198.19.0.10", "--port", "9443"]  # fmt: skip
    assert svc.target == ("198.19.0.10", 9443)  # the health check connects there
    assert svc.spec.stop is None  # a foreground process, stopped by signal


def test_the_default_port_is_8443() -> None:
    entry = Service.model_validate({"name": "console", "kind": "web"})
    spec = cluster().model_copy(update={"ha": cluster().ha.model_copy(update={"services": [entry]})})
    env = ServiceEnv(node="head1", state_dir=Path("/tmp/x"), bus=EventBus("head1"), spec=spec)
    svc = build_service(entry, env)
    assert isinstance(svc, WebConsoleService) and svc.target == ("198.19.0.10", 8443)


def test_a_host_that_is_no_head_refuses_to_start_it(tmp_path: Path) -> None:
    svc = _service(tmp_path, "node01")
    with pytest.raises(ResourceError, match="node01 is not a head of the spec"):
        asyncio.run(svc.start())


def test_the_cli_defaults_are_the_settings_defaults() -> None:
    from haoscar.cli import web as cli_web
    from haoscar.web.context import WebSettings

    assert (WebSettings().session_ttl_s, WebSettings().idle_ttl_s) == (cli_web.SESSION_TTL_S, cli_web.IDLE_TTL_S)
