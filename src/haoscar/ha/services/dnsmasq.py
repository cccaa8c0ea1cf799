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
import subprocess
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
        self._warm: subprocess.Popen[bytes] | None = None
        # One start at a time: two overlapping starts (a promotion abandoned under load and the next one) both
        # passed the "already running" check and ran two dnsmasq, reading the renderer's answers in turn.
        self._starting = asyncio.Lock()
        self._bound: asyncio.subprocess.Process | None = None  # the process whose pid file was seen
        self._prewarm()

    def _prewarm(self) -> None:
        """On a head's daemon (a spec, a running loop) the renderer is started ahead of need and waits, as the
        status API's listener does: a takeover then pays for the render, not for starting Python (~0.7 s).

        Started with a plain ``Popen`` (a fork and exec, a few ms), not as an asyncio task: a task cancelled while
        asyncio created the process (a daemon stopping right after a demotion) could hang the loop's shutdown."""
        if self.env.spec is None or self._warm is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        argv = [sys.executable, "-m", RENDER_MODULE, "--warm", str(self.env.state_dir)]
        with contextlib.suppress(OSError):  # then rendered cold at start()
            self._warm = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )

    async def _render_warm(self, interface: str) -> bool:
        """Render through the waiting renderer, then end it: an active head needs none until it stops serving
        (``stop`` starts the next one), and a waiting one holds SQLAlchemy's ~60 MB for nothing (docs/benchmarks.md,
        bench idle). False when there is none (then the cold path runs)."""
        warm, self._warm = self._warm, None
        if warm is None or warm.poll() is not None:
            return False
        try:
            line = await within(asyncio.to_thread(_ask, warm, interface), max(30.0, self.spec.timeout))
        except TimeoutError:
            raise self.fail("rendering the netboot files from the database took longer than 30 s") from None
        finally:
            warm.kill()  # it would end at EOF anyway; killing also frees a reader thread still waiting for it
            await asyncio.to_thread(warm.wait)
            for pipe in (warm.stdin, warm.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        answer = json.loads(line or b"{}")
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
        async with self._starting:
            await self._start()

    async def _start(self) -> None:
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
        # dnsmasq writes its pid file once its sockets are bound: before that it is not serving yet. Read until
        # this process has written it, not every second after (it writes it once; a pid file read per second was
        # a tenth of an idle active head's CPU).
        if self._bound is not self._proc:
            if read_pid_file(self.paths.pid_file) != pid:
                return f"dnsmasq (pid {pid}) has not written {self.paths.pid_file} yet"
            self._bound = self._proc
        return None

    async def stop(self) -> bool:
        proc, self._proc = self._proc, None
        gone = await stop_child(proc, self.spec.stop_timeout, self.spec.kill_timeout)
        if gone and proc is not None:
            self.paths.pid_file.unlink(missing_ok=True)
        if proc is not None:
            self._prewarm()  # it served: ready for the next takeover
        return gone


def _ask(warm: subprocess.Popen[bytes], interface: str) -> bytes:
    """The renderer's answer for ``interface`` (after its ``ready`` line); b"" when it exited. In a thread."""
    assert warm.stdin is not None and warm.stdout is not None
    try:
        warm.stdin.write(interface.encode() + b"\n")
        warm.stdin.flush()
    except OSError:
        return b""
    line = warm.stdout.readline()
    while line and b'"ready"' in line:
        line = warm.stdout.readline()
    return line
