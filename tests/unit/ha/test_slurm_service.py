"""The ``slurmctld`` service kind with a stand-in program: it needs haoscar's slurm.conf, makes the controller's
directories, runs in the foreground as the daemon's child and is gone after the stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haoscar.events import EventBus
from haoscar.ha.services import ResourceError, ServiceEnv, build_service
from haoscar.ha.services.proc import pid_alive
from haoscar.ha.services.slurmctld import SlurmctldService
from haoscar.spec.models import Service


def service(tmp_path: Path, conf: Path) -> tuple[SlurmctldService, EventBus]:
    bus = EventBus("head1")
    env = ServiceEnv(node="head1", state_dir=tmp_path / "state", bus=bus)
    spec = Service.model_validate(
        {"name": "slurmctld", "kind": "slurmctld", "start": "exec sleep 30", "monitor": "true", "stop_timeout": 2}
    )
    built = build_service(spec, env)
    assert isinstance(built, SlurmctldService)
    built.conf_path = str(conf)
    return built, bus


def test_without_slurm_conf_the_start_fails_naming_slurm_sync(tmp_path: Path) -> None:
    svc, _bus = service(tmp_path, tmp_path / "missing.conf")
    with pytest.raises(ResourceError) as caught:
        asyncio.run(svc.start())
    assert "haoscar slurm sync" in str(caught.value) and svc.pid() is None


def test_start_makes_the_state_directories_and_stop_ends_the_controller(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    state = tmp_path / "scheduler" / "slurmctld"
    conf.write_text(
        f"StateSaveLocation={state}\nSlurmctldPidFile={tmp_path}/run/slurmctld.pid\n"
        f"SlurmctldLogFile={tmp_path}/log/slurmctld.log\n"
    )
    svc, _bus = service(tmp_path, conf)

    async def scenario() -> tuple[int | None, bool, bool]:
        await svc.start()
        pid = svc.pid()
        healthy = await svc.check() is None
        stopped = await svc.stop()
        return pid, healthy, stopped

    pid, healthy, stopped = asyncio.run(scenario())
    assert pid is not None and healthy and stopped
    assert not pid_alive(pid) and svc.pid() is None
    assert state.is_dir() and (tmp_path / "run").is_dir() and (tmp_path / "log").is_dir()


def test_start_gives_the_state_directory_to_slurm_user(tmp_path: Path) -> None:
    """slurmctld saves as SlurmUser after dropping root: the whole StateSaveLocation tree (a job's script
    replicated from a head that ran it as root included) is that account's before the controller starts."""
    import os
    import pwd

    slurm = pwd.getpwnam("slurm")  # Debian's slurm-wlm-basic-plugins creates it (uid 64030)
    state = tmp_path / "scheduler" / "slurmctld"
    (state / "hash.3" / "job.3").mkdir(parents=True)
    (state / "hash.3" / "job.3" / "script").write_text("#!/bin/sh\n")
    (state / "job_state").write_bytes(b"queue")
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"SlurmUser=slurm\nStateSaveLocation={state}\n")
    svc, _bus = service(tmp_path, conf)

    async def scenario() -> bool:
        await svc.start()
        return await svc.stop()

    assert asyncio.run(scenario())
    paths = [state, state / "hash.3", state / "hash.3" / "job.3", state / "hash.3" / "job.3" / "script"]
    for path in [*paths, state / "job_state"]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (slurm.pw_uid, slurm.pw_gid), path
    assert os.stat(tmp_path).st_uid == os.getuid()  # only the state tree, not what is above it


def test_a_slurm_user_without_an_account_fails_the_start_naming_it(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"SlurmUser=nosuchslurm\nStateSaveLocation={tmp_path}/state\n")
    svc, _bus = service(tmp_path, conf)
    with pytest.raises(ResourceError) as caught:
        asyncio.run(svc.start())
    assert "SlurmUser nosuchslurm has no account" in str(caught.value) and svc.pid() is None
