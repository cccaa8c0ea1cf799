"""Kind ``dnsmasq``: DHCP + TFTP for the compute nodes, on the active head, rendered from the cluster database.

One renderer, one owner (issue 11): the config is the one ``netboot sync`` / ``dhcp configure`` write
(``provision.netboot_sync``: nodes, assigned MACs, netboot/localboot, quarantine, next-server = the compute-facing
address), under ``STATE/netboot/``. At each start the resource renders it afresh from *this* head's database - on
a standby that takes over, the replicated one - in a process of its own (``ha/services/netboot_render.py``: the
daemon never loads SQLAlchemy), then runs dnsmasq in the foreground as the daemon's child with that config. The
render process is started ahead of need on every head and waits (``--warm``), so a takeover does not wait for
Python and SQLAlchemy to load. Because the pid file and the ``--conf-file`` are the ones ``provision.dhcp_server``
looks for, a database change made on the active head (``mac assign``, ``node add``, ``netboot enable``) reaches
this dnsmasq through the usual ``netboot sync`` + SIGHUP, without a restart of the group.

dnsmasq is root only to bind its ports and open its files, then runs as an unprivileged account
(``provision.dnsmasq_user``): a compute node that finds a hole in its DHCP parsing does not get root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys

from haoscar.ha.services.base import ServiceEnv, ServiceResource
from haoscar.ha.services.proc import read_pid_file, run_shell, spawn, stop_child, within
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.spec.models import Service

RENDER_MODULE = "haoscar.ha.services.netboot_render"


class DnsmasqService(ServiceResource):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self.paths = NetbootPaths.under(env.state_dir)
        self._proc: asyncio.subprocess.Process | None = None
        self._warm: asyncio.Task[asyncio.subprocess.Process | None] | None = None
        self._prewarm()

    def _prewarm(self) -> None:
        """On a head's daemon (a spec, a running loop) the renderer is started ahead of need and waits, as the
        status API's listener does: a takeover then pays for the render, not for starting Python (~0.7 s)."""
        if self.env.spec is None or self._warm is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._warm = asyncio.ensure_future(self._start_warm())

    async def _start_warm(self) -> asyncio.subprocess.Process | None:
        argv = [sys.executable, "-m", RENDER_MODULE, "--warm", str(self.env.state_dir)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            assert proc.stdout is not None
            ready = await within(proc.stdout.readline(), 60.0)
        except (OSError, TimeoutError):
            return None  # rendered cold at start()
        return proc if b'"ready"' in ready else None

    async def _render_warm(self, interface: str) -> bool:
        """Render through the waiting renderer; False when there is none (then the cold path runs)."""
        warm = await self._warm if self._warm is not None else None
        if warm is None or warm.returncode is not None or warm.stdin is None or warm.stdout is None:
            self._warm = None
            self._prewarm()
            return False
        warm.stdin.write(interface.encode() + b"\n")
        await warm.stdin.drain()
        answer = json.loads(await within(warm.stdout.readline(), max(30.0, self.spec.timeout)) or b"{}")
        if not answer.get("ok"):
            raise self.fail(f"cannot render the DHCP config: {answer.get('error', 'the renderer exited')}")
        return True

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def render(self) -> None:
        """``netboot sync`` of every node from this head's database, for its own private interface."""
        head = self.env.head
        if self.env.spec is None or head is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; dnsmasq serves from a head's private side")
        if await self._render_warm(head.private_interface):
            return
        argv = [sys.executable, "-m", RENDER_MODULE, str(self.env.state_dir), head.private_interface]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await within(proc.communicate(), max(30.0, self.spec.timeout))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise self.fail("rendering the netboot files from the database took longer than 30 s") from None
        if proc.returncode != 0:
            lines = (err or out).decode(errors="replace").strip().splitlines()
            raise self.fail(f"cannot render the DHCP config: {lines[-1] if lines else f'status {proc.returncode}'}")

    async def start(self) -> None:
        if self.pid() is not None:
            return
        binary = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
        if binary is None:
            raise self.fail("dnsmasq is not installed; install the Debian package dnsmasq-base")
        await self.render()
        self.paths.pid_file.unlink(missing_ok=True)
        argv = [
            binary,
            "--keep-in-foreground",
            f"--conf-file={self.paths.conf}",
            f"--log-facility={self.paths.log_file}",  # its own log: a lab host must not write the machine's syslog
        ]
        proc = await spawn(argv, self.log_path)
        self._proc = proc
        await self.wait_ready(proc)

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout)
            return None if result.ok else f"monitor {result.describe()}"
        pid = self.pid()
        if pid is None:
            if self._proc is None:
                return "not started"
            return f"dnsmasq exited with status {self._proc.returncode} (log: {self.log_path})"
        # dnsmasq writes its pid file once its sockets are bound: before that it is not serving yet.
        if read_pid_file(self.paths.pid_file) != pid:
            return f"dnsmasq (pid {pid}) has not written {self.paths.pid_file} yet"
        return None

    async def stop(self) -> bool:
        proc, self._proc = self._proc, None
        gone = await stop_child(proc, self.spec.stop_timeout, self.spec.kill_timeout)
        if gone and proc is not None:
            self.paths.pid_file.unlink(missing_ok=True)
        return gone
