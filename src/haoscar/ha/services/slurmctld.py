"""Kind ``slurmctld``: the Slurm controller, run by the active head only.

slurmctld runs in the foreground (``-D``) as the daemon's child, in a session of its own, with haoscar's
``slurm.conf`` (``-f``, default ``/etc/haoscar/slurm/slurm.conf``, written by ``haoscar slurm sync``). Listed
after the private alias in ``ha.services``, it starts once the controller address is on this head; it is stopped
(SIGTERM: slurmctld saves its state, then SIGKILL after ``stop_timeout``) on demotion. Healthy = the process lives
and ``scontrol ping`` (through the controller address) says it is UP. The role machine runs the resource group
on one head at a time, so two controllers never run at once (docs/slurm.md; the lab test samples both heads).

Before each start ``StateSaveLocation`` is given to ``SlurmUser`` (``slurm``): slurmctld drops to that account and
saves there, and the tree may have been made by root or replicated from a head that ran the controller as root.

``start`` may replace the command line (it must stay in the foreground); ``SLURM_CONF`` is set to the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shlex
import shutil
from pathlib import Path

from haoscar.events import Event
from haoscar.ha.services.base import ProbePacer, ServiceEnv, ServiceResource
from haoscar.ha.services.proc import run_shell, spawn, stop_child
from haoscar.provision.slurm_conf import CONF_PATH
from haoscar.spec.models import Service


def conf_value(conf_text: str, key: str) -> str | None:
    match = re.search(rf"^{key}=(\S+)", conf_text, re.MULTILINE)
    return match.group(1) if match else None


def own_state(conf_text: str) -> None:
    """Give ``StateSaveLocation`` (the whole tree) to ``SlurmUser``: slurmctld saves there after dropping root, and a
    tree made by root or replicated from a head that ran the controller as root would refuse its saves. Raises
    KeyError when the account does not exist."""
    user, state = conf_value(conf_text, "SlurmUser"), conf_value(conf_text, "StateSaveLocation")
    if user is None or state is None or user == "root":
        return
    entry = pwd.getpwnam(user)
    owner = (entry.pw_uid, entry.pw_gid)
    for dirpath, dirnames, filenames in os.walk(state):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))]:
            with contextlib.suppress(FileNotFoundError):  # a file replication is replacing right now
                st = os.lstat(name)
                if (st.st_uid, st.st_gid) != owner:
                    os.lchown(name, *owner)


def conf_dirs(conf_text: str) -> list[Path]:
    """The directories slurmctld writes into (state, pid and log files), from its config."""
    dirs: list[Path] = []
    for key in ("StateSaveLocation", "SlurmctldPidFile", "SlurmctldLogFile"):
        match = re.search(rf"^{key}=(\S+)", conf_text, re.MULTILINE)
        if match:
            path = Path(match.group(1))
            dirs.append(path if key == "StateSaveLocation" else path.parent)
    return dirs


class SlurmctldService(ServiceResource):
    conf_path = CONF_PATH

    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self._proc: asyncio.subprocess.Process | None = None
        self._pacer = ProbePacer(spec.probe_interval)  # scontrol ping is a process and a munge credential each

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def argv(self) -> list[str]:
        if self.spec.start is not None:
            return ["/bin/sh", "-c", self.spec.start]
        binary = shutil.which("slurmctld") or shutil.which("slurmctld", path="/usr/sbin:/sbin")
        if binary is None:
            raise self.fail("slurmctld is not installed; install the Debian package slurmctld")
        # -i: a state copied by asynchronous replication may hold a job whose script had not arrived yet; without
        # -i slurmctld refuses to start at all ("missing or corrupted"), with it only that job is lost (within the
        # documented bound) and the cluster has a controller.
        return [binary, "-D", "-i", "-f", self.conf_path]

    async def start(self) -> None:
        if self.pid() is not None:
            return
        try:
            conf = Path(self.conf_path).read_text()
        except OSError as exc:
            raise self.fail(f"cannot read {self.conf_path} ({exc.strerror}); run `haoscar slurm sync` first") from None
        for directory in conf_dirs(conf):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(own_state, conf)
        except KeyError:
            user = conf_value(conf, "SlurmUser")
            raise self.fail(f"SlurmUser {user} has no account on this head; install Debian's slurmctld") from None
        argv = self.argv()
        env = {"SLURM_CONF": self.conf_path, "HAOSCAR_NODE": self.env.node, "HAOSCAR_SERVICE": self.name}
        self._proc = await spawn(argv, self.log_path, env)
        await self.wait_ready(self._proc)
        # A new controller knows the nodes only once each slurmd registers again, which they do by themselves
        # only when pinged (every SlurmdTimeout / 3). `scontrol reconfigure` makes every slurmd re-register now, so
        # the queue moves at once on the head that just took over.
        result = await run_shell("scontrol reconfigure", self.spec.timeout, {"SLURM_CONF": self.conf_path})
        if not result.ok:
            message = f"{self.name}: scontrol reconfigure after the start {result.describe()}"
            self.env.bus.emit(Event("resource.warning", self.env.node, message, "warning"))

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout, {"SLURM_CONF": self.conf_path})
            return None if result.ok else f"monitor {result.describe()}"
        if self.pid() is None:
            if self._proc is None:
                return "not started"
            return f"slurmctld exited with status {self._proc.returncode} (log: {self.log_path})"
        # `scontrol ping` asks the controller through the controller address (the alias on this head), with
        # munge: it proves the controller answers the way clients reach it. A bare TCP connect would also be logged
        # by slurmctld as an error on every check.
        proc = self._proc
        if not self._pacer.due(proc):
            return None
        ping = await run_shell("scontrol ping", min(5.0, self.spec.timeout), {"SLURM_CONF": self.conf_path})
        if ping.ok and " is UP" in ping.output:
            return self._pacer.record(proc, None)
        return self._pacer.record(
            proc, f"slurmctld (pid {self.pid()}) does not answer scontrol ping yet: {ping.describe()}"
        )

    async def stop(self) -> bool:
        proc, self._proc = self._proc, None
        return await stop_child(proc, self.spec.stop_timeout, self.spec.kill_timeout)

    def describe(self) -> str:
        return shlex.join(self.argv())
