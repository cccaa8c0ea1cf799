"""The resource group with real processes: order, self-healing, escalation, services that will not stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from haoscar.events import Event, EventBus
from haoscar.ha.resources import ResourceError, ResourceGroup
from haoscar.ha.services import ServiceEnv, build_service
from haoscar.ha.services.proc import pid_alive
from haoscar.spec.models import Service


@pytest.fixture
def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice, so parallel runs do not collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_group(tmp_path: Path, *services: dict[str, Any]) -> tuple[ResourceGroup, EventBus]:
    bus = EventBus("head1")
    env = ServiceEnv(node="head1", state_dir=tmp_path / "state", bus=bus)
    group = ResourceGroup([build_service(Service.model_validate(s), env) for s in services], bus)
    return group, bus


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


async def wait_for_event(bus: EventBus, kind: str, count: int = 1, timeout: float = 10.0) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in bus.recent(1000) if e.kind == kind]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            kinds = [e.kind for e in bus.recent(50)]
            raise AssertionError(f"no {count} x {kind} within {timeout} s; saw {kinds}")
        await asyncio.sleep(0.02)


def logged_service(name: str, log: Path) -> dict[str, Any]:
    """A foreground service that writes start-NAME when it starts and stop-NAME when SIGTERM arrives."""
    script = f"trap 'echo stop-{name} >> {log}; exit 0' TERM; echo start-{name} >> {log}; while :; do sleep 0.05; done"
    return {"name": name, "kind": "command", "start": script, "stop_timeout": 3}


def test_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "order.log"

    async def scenario() -> None:
        group, bus = make_group(tmp_path, *(logged_service(n, log) for n in ("first", "second", "third")))
        await group.start()
        pids = [s.pid for s in group.snapshot()]
        assert all(pid is not None and pid_alive(pid) for pid in pids)
        assert [s.state for s in group.snapshot()] == ["running"] * 3
        assert await group.stop() is True
        assert not any(pid_alive(pid) for pid in pids if pid is not None)
        assert [s.state for s in group.snapshot()] == ["stopped"] * 3
        started = [e.data["service"] for e in bus.recent(100) if e.kind == "resource.started"]
        stopped = [e.data["service"] for e in bus.recent(100) if e.kind == "resource.stopped"]
        assert started == ["first", "second", "third"]
        assert stopped == ["third", "second", "first"]

    run(scenario)
    assert log.read_text().split() == [
        "start-first",
        "start-second",
        "start-third",
        "stop-third",
        "stop-second",
        "stop-first",
    ]


def test_failed_start_names_the_service_and_undoes_the_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        group, bus = make_group(
            tmp_path,
            {"name": "good", "start": "exec sleep 300"},
            {"name": "broken", "start": "echo cannot bind >&2; exit 3"},
            {"name": "never", "start": "exec sleep 300"},
        )
        with pytest.raises(ResourceError) as info:
            await group.start()
        assert info.value.service == "broken"
        assert "status 3" in str(info.value)
        states = {s.name: s.state for s in group.snapshot()}
        assert states == {"good": "stopped", "broken": "failed", "never": "stopped"}
        assert all(s.pid is None for s in group.snapshot())
        assert [e.data["service"] for e in bus.recent(100) if e.kind == "resource.stopped"] == ["broken", "good"]

    run(scenario)


def test_killed_once_is_restarted_in_place_without_escalation(tmp_path: Path) -> None:
    escalations: list[str] = []

    async def scenario() -> None:
        group, bus = make_group(
            tmp_path, {"name": "web", "start": "exec sleep 300", "interval": 0.1, "max_restarts": 2}
        )
        group.on_escalate = escalations.append
        await group.start()
        group.start_monitoring()
        first_pid = group.snapshot()[0].pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await wait_for_event(bus, "resource.restarted")
        status = group.snapshot()[0]
        assert status.state == "running"
        assert status.pid is not None and status.pid != first_pid and pid_alive(status.pid)
        assert (status.restarts_in_window, status.total_restarts) == (1, 1)
        assert "exited" in (status.last_error or "")
        await asyncio.sleep(0.5)  # healthy checks go on; nothing else happens
        assert group.snapshot()[0].total_restarts == 1
        assert await group.stop() is True

    run(scenario)
    assert escalations == []


def test_killed_repeatedly_escalates_exactly_once(tmp_path: Path) -> None:
    escalations: list[str] = []

    async def scenario() -> None:
        group, bus = make_group(
            tmp_path,
            {"name": "dhcp", "start": "exec sleep 300", "interval": 0.1, "max_restarts": 2, "restart_window": 60},
        )
        group.on_escalate = escalations.append
        await group.start()
        group.start_monitoring()
        for restart in (1, 2):
            pid = group.snapshot()[0].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_for_event(bus, "resource.restarted", count=restart)
        assert escalations == []
        pid = group.snapshot()[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the third failure within the window: more than max_restarts
        await wait_for_event(bus, "resource.escalated")
        await asyncio.sleep(0.5)  # no further restarts, no second escalation
        status = group.snapshot()[0]
        assert status.state == "escalated"
        assert status.total_restarts == 2
        assert status.pid is None
        assert len([e for e in bus.recent(100) if e.kind == "resource.escalated"]) == 1
        assert await group.stop() is True

    run(scenario)
    assert escalations == ["dhcp"]


def test_a_failure_outside_the_window_does_not_count(tmp_path: Path) -> None:
    escalations: list[str] = []

    async def scenario() -> None:
        group, bus = make_group(
            tmp_path,
            {"name": "svc", "start": "exec sleep 300", "interval": 0.05, "max_restarts": 1, "restart_window": 0.4},
        )
        group.on_escalate = escalations.append
        await group.start()
        group.start_monitoring()
        for restart in (1, 2):
            pid = group.snapshot()[0].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_for_event(bus, "resource.restarted", count=restart)
            await asyncio.sleep(0.5)  # let the window forget this restart
        assert group.snapshot()[0].restarts_in_window == 0
        assert group.snapshot()[0].total_restarts == 2
        assert await group.stop() is True

    run(scenario)
    assert escalations == []


def test_a_hanging_stop_command_makes_stop_fail_after_its_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        group, bus = make_group(tmp_path, {"name": "stuck", "start": "true", "stop": "sleep 30", "stop_timeout": 0.5})
        await group.start()
        began = time.monotonic()
        assert await group.stop() is False
        took = time.monotonic() - began
        assert 0.5 <= took < 30  # after its 0.5 s timeout, not when the 30 s stop command ends (load-proof)
        assert group.snapshot()[0].state == "stop-failed"
        assert "timed out" in (group.snapshot()[0].last_error or "")
        assert [e.kind for e in bus.recent(10)][-2:] == ["resource.stop_failed", "resources.stop_failed"]

    run(scenario)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    async def scenario() -> None:
        group, _ = make_group(
            tmp_path,
            {
                "name": "deaf",
                "start": "trap '' TERM; while :; do sleep 0.05; done",
                "stop_timeout": 0.5,
                "kill_timeout": 2,
            },
        )
        await group.start()
        pid = group.snapshot()[0].pid
        assert pid is not None
        began = time.monotonic()
        assert await group.stop() is True
        assert time.monotonic() - began >= 0.5  # SIGTERM was ignored for the whole grace, then SIGKILL
        assert not pid_alive(pid)

    run(scenario)


def test_a_listener_that_escaped_the_process_group_makes_stop_fail(tmp_path: Path, free_port: int) -> None:
    """A daemon that double-forked away and ignores SIGTERM still holds its port after the stop: False."""
    pid_file = tmp_path / "escaped.pid"
    listener = (
        "import os, signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {free_port})); s.listen(); "
        f"open('{pid_file}', 'w').write(str(os.getpid())); time.sleep(120)"
    )
    script = f'setsid python3 -c "{listener}" & exec sleep 300'

    async def scenario() -> None:
        group, _ = make_group(
            tmp_path,
            {
                "name": "rogue",
                "kind": "tcp",
                "start": script,
                "port": free_port,
                "stop_timeout": 0.3,
                "kill_timeout": 0.5,
            },
        )
        try:
            await group.start()
            assert await group.stop() is False
            status = group.snapshot()[0]
            assert status.state == "stop-failed"
            assert f"127.0.0.1:{free_port} still accepts" in (status.last_error or "")
        finally:
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)

    run(scenario)


def test_tcp_service_is_checked_by_connecting(tmp_path: Path, free_port: int) -> None:
    async def scenario() -> None:
        group, bus = make_group(
            tmp_path,
            {
                "name": "http",
                "kind": "tcp",
                "start": f"exec python3 -m http.server {free_port} --bind 127.0.0.1",
                "port": free_port,
                "interval": 0.1,
            },
        )
        await group.start()
        group.start_monitoring()
        _, writer = await asyncio.open_connection("127.0.0.1", free_port)
        writer.close()
        pid = group.snapshot()[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for_event(bus, "resource.restarted")
        _, writer = await asyncio.open_connection("127.0.0.1", free_port)  # serving again
        writer.close()
        assert await group.stop() is True
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", free_port)

    run(scenario)


def test_process_service_finds_a_daemon_that_left_and_stops_it_by_pid(tmp_path: Path) -> None:
    name = f"haoscar-t{os.getpid()}"
    # A classic daemon: the start line returns at once, the program lives on in a session of its own.
    start = f"setsid -f python3 -c \"import os; os.execvp('sleep', ['{name}', '300'])\""

    async def scenario() -> None:
        group, _ = make_group(tmp_path, {"name": "daemon", "kind": "process", "start": start, "process": name})
        await group.start()
        pid = group.snapshot()[0].pid
        assert pid is not None and pid_alive(pid)
        assert (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(name.encode())
        assert await group.stop() is True
        assert not pid_alive(pid)

    run(scenario)


def test_process_service_reports_a_missing_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        group, _ = make_group(
            tmp_path,
            # 2 s, not less: one scan of /proc must fit on a loaded machine, or all it could say is "took longer"
            {"name": "ghost", "kind": "process", "start": "true", "process": f"nothing-{os.getpid()}", "timeout": 2},
        )
        with pytest.raises(ResourceError, match="no live process named nothing-"):
            await group.start()

    run(scenario)


def test_systemd_service_drives_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemctl is a recording stand-in here (no systemd in a test); the calls are what a real unit gets."""
    bindir, calls, active = tmp_path / "bin", tmp_path / "calls", tmp_path / "active"
    bindir.mkdir()
    fake = bindir / "systemctl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        "unit=$(eval echo \\${$#})\n"
        'case "$1" in\n'
        f'  start) [ "$unit" = broken.service ] && {{ echo "Job failed" >&2; exit 1; }}; touch {active} ;;\n'
        f"  stop) rm -f {active} ;;\n"
        f"  is-active) if [ -e {active} ]; then echo active; else echo inactive; exit 3; fi ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")

    async def scenario() -> None:
        group, _ = make_group(tmp_path, {"name": "slurm", "kind": "systemd", "unit": "slurmctld.service"})
        await group.start()
        assert group.snapshot()[0].state == "running"
        assert await group.stop() is True
        broken, _ = make_group(tmp_path, {"name": "bad", "kind": "systemd", "unit": "broken.service"})
        with pytest.raises(ResourceError, match=r"systemctl start broken\.service failed: Job failed"):
            await broken.start()

    run(scenario)
    lines = calls.read_text().splitlines()
    assert lines[:3] == ["start slurmctld.service", "is-active slurmctld.service", "stop slurmctld.service"]
