"""The ``nfs-ganesha`` service kind with a stand-in program (the real server runs only in lab hosts,
tests/lab/test_nfs_failover.py): it renders the config for the private alias, makes the exported trees and
Ganesha's directories, runs in the foreground as the daemon's child, is gone after the stop, and refuses to start
where it cannot serve."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from haoscar.events import EventBus
from haoscar.ha.services import ResourceError, ServiceEnv, build_service
from haoscar.ha.services import nfs_ganesha as module
from haoscar.ha.services.nfs_ganesha import NfsGaneshaService
from haoscar.ha.services.proc import pid_alive
from haoscar.spec.models import ClusterSpec, Service


def cluster(tmp_path: Path, alias: str | None = "198.18.0.3", **nfs: Any) -> ClusterSpec:
    head = {"private_interface": "eth0", "public_ip": "198.19.0.11", "alias_ip": "198.19.0.10"}
    head |= {"netmask": "255.255.255.0"} | ({"private_alias_ip": alias} if alias else {})
    return ClusterSpec.model_validate(
        {
            "cluster": {"name": "c"},
            "networks": {"private": {"subnet": "198.18.0.0/24"}, "public": {"subnet": "198.19.0.0/24"}},
            "heads": {
                "primary": {**head, "hostname": "head1", "private_ip": "198.18.0.1"},
                "standby": {**head, "hostname": "head2", "private_ip": "198.18.0.2", "public_ip": "198.19.0.12"},
            },
            "nfs": {"exports": [{"path": str(tmp_path / "home")}], **nfs},
        }
    )


def service(tmp_path: Path, spec: ClusterSpec, node: str = "head1", monitor: str = "true") -> NfsGaneshaService:
    """The service with ``monitor`` as its health check: the real one asks the alias, which only a lab host has."""
    env = ServiceEnv(node=node, state_dir=tmp_path / "state", bus=EventBus(node), spec=spec)
    entry = Service.model_validate({"name": "nfs", "kind": "nfs-ganesha", "monitor": monitor, "stop_timeout": 2})
    built = build_service(entry, env)
    assert isinstance(built, NfsGaneshaService)
    return built


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    program = tmp_path / "ganesha.nfsd"
    program.write_text("#!/bin/sh\nexec sleep 30\n")
    program.chmod(0o755)
    monkeypatch.setattr(module, "find_ganesha", lambda: str(program))
    return program


def test_start_renders_for_the_alias_makes_the_trees_and_stop_ends_the_server(tmp_path: Path, stand_in: Path) -> None:
    svc = service(tmp_path, cluster(tmp_path))

    async def scenario() -> tuple[int | None, str | None, bool]:
        await svc.start()
        pid = svc.pid()
        problem = await svc.check()
        return pid, problem, await svc.stop()

    pid, problem, stopped = asyncio.run(scenario())
    assert pid is not None and problem is None and stopped
    assert not pid_alive(pid) and svc.pid() is None
    conf = (tmp_path / "state/nfs/ganesha.conf").read_text()
    assert "Bind_addr = 198.18.0.3;" in conf and f'Path = "{tmp_path / "home"}";' in conf
    assert (tmp_path / "home").is_dir() and (tmp_path / "state/nfs/recovery").is_dir()
    assert svc.bind == "198.18.0.3"


def test_a_dead_server_is_reported_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "ganesha.nfsd"
    program.write_text("#!/bin/sh\nexit 3\n")
    program.chmod(0o755)
    monkeypatch.setattr(module, "find_ganesha", lambda: str(program))
    svc = service(tmp_path, cluster(tmp_path), monitor="false")
    with pytest.raises(ResourceError) as caught:
        asyncio.run(svc.start())
    assert "exited with status 3" in str(caught.value) and svc.pid() is None


@pytest.mark.parametrize(
    ("node", "spec_change", "message"),
    [
        ("witness", {}, "witness is not a head of the spec"),
        ("head1", {"alias": None}, "set heads.*.private_alias_ip"),
        ("head1", {"storage": "external", "server": "198.18.0.240"}, "the NAS serves the exports"),
    ],
)
def test_it_refuses_to_start_where_it_cannot_serve(
    tmp_path: Path, stand_in: Path, node: str, spec_change: dict[str, Any], message: str
) -> None:
    svc = service(tmp_path, cluster(tmp_path, **spec_change), node=node)
    with pytest.raises(ResourceError) as caught:
        asyncio.run(svc.start())
    assert message in str(caught.value) and svc.pid() is None
    assert not (tmp_path / "state/nfs/ganesha.conf").exists()


def test_shared_storage_must_be_mounted_before_the_export_starts(tmp_path: Path, stand_in: Path) -> None:
    svc = service(tmp_path, cluster(tmp_path, storage="shared"))
    with pytest.raises(ResourceError) as caught:
        asyncio.run(svc.start())
    assert "mount the shared storage first" in str(caught.value) and not (tmp_path / "home").exists()


def test_a_server_left_by_an_earlier_daemon_is_stopped_before_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon killed with -9 leaves its Ganesha running (it has a session of its own); the next daemon's start
    finds it by the pid file and its name and stops it, so the new server can bind the alias."""
    program = tmp_path / "ganesha.nfsd"
    program.write_text(
        '#!/bin/bash\nwhile [ $# -gt 0 ]; do [ "$1" = -p ] && echo $$ > "$2"; shift; done\n'
        "exec -a ganesha.nfsd sleep 30\n"
    )
    program.chmod(0o755)
    monkeypatch.setattr(module, "find_ganesha", lambda: str(program))
    spec = cluster(tmp_path)
    pid_file = tmp_path / "state/nfs/ganesha.pid"

    first = service(tmp_path, spec, monitor=f"test -s {pid_file}")
    asyncio.run(first.start())
    leftover = first.pid()
    assert leftover is not None and pid_alive(leftover)

    second = service(tmp_path, spec, monitor=f"test -s {pid_file}")  # the next daemon: it knows no process

    async def scenario() -> int | None:
        await second.start()
        pid = second.pid()
        await second.stop()
        return pid

    started = asyncio.run(scenario())
    assert not pid_alive(leftover) and started is not None and started != leftover
