"""Services defined by shell command lines: kinds ``command``, ``tcp`` and ``process``.

Without a ``stop`` line, ``start`` is a program that stays in the foreground: haoscar keeps it as its child, tracks
it by pid, and stops it with SIGTERM then SIGKILL to its process group. With a ``stop`` line, ``start`` is a command
that returns (it may daemonize) and ``stop`` undoes it. Kinds differ only in how health is checked:
``command`` runs ``monitor`` (exit 0 = healthy) or watches its process, ``tcp`` connects to ``port``, ``process``
looks for a live process named ``process`` (by ``pid_file``, else by scanning /proc of this PID namespace).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from haoscar.ha.services.base import ServiceEnv, ServiceResource
from haoscar.ha.services.proc import (
    find_by_name,
    pid_alive,
    proc_is_ours,
    read_pid_file,
    read_proc,
    run_shell,
    spawn,
    tcp_open,
    terminate,
    within,
)
from haoscar.spec.models import Service


class ShellService(ServiceResource):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self._proc: asyncio.subprocess.Process | None = None
        self.last_stop_error: str | None = None

    # A command service without a monitor is healthy exactly while its process lives. A tcp or process service
    # has a check of its own, so its start line may also daemonize and exit 0.
    @property
    def child_must_live(self) -> bool:
        return False

    @property
    def foreground(self) -> bool:
        return self.spec.stop is None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def env_vars(self) -> dict[str, str]:
        return {
            "HAOSCAR_NODE": self.env.node,
            "HAOSCAR_SERVICE": self.name,
            "HAOSCAR_STATE_DIR": str(self.env.state_dir),
        }

    async def start(self) -> None:
        assert self.spec.start is not None  # the spec model requires it for these kinds
        if self.pid() is not None:
            return
        if self.foreground:
            self._proc = await spawn(["/bin/sh", "-c", self.spec.start], self.log_path, self.env_vars())
            await asyncio.sleep(0.05)  # a start line that fails at once should fail the start, not the first check
            await self.wait_ready(self._proc, may_exit=not self.child_must_live)
            return
        result = await run_shell(self.spec.start, self.spec.timeout, self.env_vars())
        if not result.ok:
            raise self.fail(f"start command {result.describe()}")
        await self.wait_ready()

    async def stop(self) -> bool:
        ok = True
        self.last_stop_error = None
        if self.spec.stop is not None:
            result = await run_shell(self.spec.stop, self.spec.stop_timeout, self.env_vars())
            if not result.ok:
                ok = False
                self.last_stop_error = f"stop command {result.describe()}"
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            gone = await terminate(proc.pid, self.spec.stop_timeout, self.spec.kill_timeout)
            if not gone:
                ok = False
                self.last_stop_error = f"process group {proc.pid} survived SIGKILL"
            if proc.returncode is None:
                try:
                    await within(proc.wait(), self.spec.kill_timeout)
                except TimeoutError:
                    ok = False
        leftover = await self.still_running()
        if leftover is not None:
            ok = False
            self.last_stop_error = leftover
        return ok

    async def still_running(self) -> str | None:
        """After a stop: what shows the service is still up (None when nothing does)."""
        return None

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout, self.env_vars())
            return None if result.ok else f"monitor {result.describe()}"
        if not self.foreground:
            return None
        if self._proc is None:
            return "not started"
        code = self._proc.returncode
        if code is not None and (self.child_must_live or code != 0):
            return f"process exited with status {code}"
        return None


class CommandService(ShellService):
    @property
    def child_must_live(self) -> bool:
        return self.spec.monitor is None


class TcpService(ShellService):
    @property
    def target(self) -> tuple[str, int]:
        assert self.spec.port is not None
        return str(self.spec.address or "127.0.0.1"), self.spec.port

    async def check(self) -> str | None:
        problem = await super().check()
        if problem is not None:
            return problem
        return await tcp_open(*self.target, self.spec.timeout)

    async def still_running(self) -> str | None:
        host, port = self.target
        deadline = asyncio.get_running_loop().time() + self.spec.kill_timeout
        while await tcp_open(host, port, 0.5) is None:
            if asyncio.get_running_loop().time() >= deadline:
                return f"{host}:{port} still accepts connections after the stop"
            await asyncio.sleep(0.05)
        return None


class ProcessService(ShellService):
    def pids(self) -> list[int]:
        assert self.spec.process is not None
        if not proc_is_ours():
            raise self.fail("/proc does not show this PID namespace; remount it in the host before using kind process")
        if self.spec.pid_file is not None:
            pid = read_pid_file(Path(self.spec.pid_file))
            info = read_proc(pid) if pid else None
            # The pid must still name the program: after a crash the number may belong to someone else.
            return [pid] if pid and info is not None and info.alive and info.named(self.spec.process) else []
        return find_by_name(self.spec.process)

    _found: tuple[int, ...] = ()

    def pid(self) -> int | None:
        # Sync and called from status views on the event loop: use what the last check found (stat only here).
        own = super().pid()
        if own is not None:
            return own
        return next((pid for pid in self._found if pid_alive(pid)), None)

    async def check(self) -> str | None:
        problem = await super().check()
        if problem is not None:
            return problem
        self._found = tuple(await asyncio.to_thread(self.pids))
        if not self._found:
            where = f"pid file {self.spec.pid_file}" if self.spec.pid_file else "/proc"
            return f"no live process named {self.spec.process} (looked in {where})"
        return None

    async def still_running(self) -> str | None:
        # The daemon may have left our process group (double fork + setsid): stop it by its own pid.
        survivors = []
        for pid in await asyncio.to_thread(self.pids):
            if not await terminate(pid, self.spec.stop_timeout, self.spec.kill_timeout, group=False):
                survivors.append(pid)
        if survivors:
            return f"{self.spec.process} (pid {', '.join(map(str, survivors))}) survived SIGKILL"
        return None
