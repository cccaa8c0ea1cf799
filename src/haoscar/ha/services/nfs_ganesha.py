"""Kind ``nfs-ganesha``: the spec's NFS exports (``nfs.exports``, default /home) served by NFS-Ganesha from the
private alias of the active head (docs/nfs.md).

At each start the configuration is rendered afresh from the spec (``provision.nfs_ganesha``) into
``STATE/nfs/ganesha.conf``, the exported trees are made sure of, and ``ganesha.nfsd -F`` runs in the foreground as
the daemon's child, in a session of its own, its log in ``STATE/nfs/ganesha.log``. Listed after the alias is up
(the daemon adds it before the group starts), it binds the alias only. Healthy = the process lives and an NFSv4
NULL RPC to alias:port is answered (``provision.nfs_ganesha_rpc``). Stopped (SIGTERM, SIGKILL after
``stop_timeout``) on demotion, before the alias is dropped; a crash of the head takes it down with everything else,
and the standby that takes over starts its own on its replicated copy of the trees.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.ha.services.base import ServiceEnv, ServiceResource
from haoscar.ha.services.proc import (
    proc_is_ours,
    read_pid_file,
    read_proc,
    run_shell,
    spawn,
    stop_child,
    terminate,
)
from haoscar.provision.nfs_ganesha import GaneshaPaths, find_ganesha, ganesha_argv, recovery_root, render_config
from haoscar.provision.nfs_ganesha_rpc import rpc_null
from haoscar.spec.models import Service


class NfsGaneshaService(ServiceResource):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self.paths = GaneshaPaths.under(env.state_dir)
        self._proc: asyncio.subprocess.Process | None = None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def bind(self) -> str | None:
        head = self.env.head
        return str(head.private_alias_ip) if head is not None and head.private_alias_ip is not None else None

    def _config(self) -> str:
        """The rendered configuration, after the checks a spec alone cannot make (this node, this machine)."""
        spec, head = self.env.spec, self.env.head
        if spec is None or head is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; the NFS export runs on a head")
        if spec.nfs.storage == "external":
            raise self.fail("nfs.storage is external: the NAS serves the exports; remove this service")
        if head.private_alias_ip is None:
            raise self.fail("the NFS export follows the private alias; set heads.*.private_alias_ip")
        return render_config(spec, head.private_alias_ip, self.paths)

    def _prepare(self, text: str) -> None:
        """Ganesha's directories, the exported trees, and the configuration file."""
        spec = self.env.spec
        assert spec is not None
        for directory in (self.paths.root, self.paths.krb5_cache, recovery_root(spec, self.paths)):
            directory.mkdir(parents=True, exist_ok=True)
        for export in spec.nfs.exports:
            path = Path(export.path)
            if spec.nfs.storage == "replicated":
                path.mkdir(parents=True, exist_ok=True)  # replication creates it too; a fresh head may not have run it
            elif not path.is_dir():
                raise self.fail(f"{path} is not a directory; mount the shared storage first (a service listed earlier)")
        atomic_write(self.paths.conf, text.encode(), mode=0o644)
        self.paths.pid_file.unlink(missing_ok=True)

    async def start(self) -> None:
        if self.pid() is not None:
            return
        text = self._config()
        binary = find_ganesha()
        if binary is None:
            raise self.fail("ganesha.nfsd is not installed; install the Debian packages nfs-ganesha nfs-ganesha-vfs")
        if not await self._stop_leftover():
            raise self.fail(f"a ganesha.nfsd left by an earlier run (pid file {self.paths.pid_file}) will not stop")
        try:
            await asyncio.to_thread(self._prepare, text)
        except OSError as exc:
            raise self.fail(f"cannot prepare {exc.filename}: {exc.strerror}") from None
        self._proc = await spawn(ganesha_argv(binary, self.paths), self.log_path)
        await self.wait_ready(self._proc)

    async def _stop_leftover(self) -> bool:
        """A server that outlived the daemon that started it (a daemon killed with -9 leaves its children; systemd
        stops the whole unit, a lab does not) would hold the alias's port: stop it, by its pid file and name."""
        pid = read_pid_file(self.paths.pid_file)
        info = read_proc(pid) if pid is not None and proc_is_ours() else None
        if pid is None or info is None or not info.alive or not info.named("ganesha.nfsd"):
            return True
        return await terminate(pid, self.spec.stop_timeout, self.spec.kill_timeout, group=False)

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout)
            return None if result.ok else f"monitor {result.describe()}"
        if self.pid() is None:
            if self._proc is None:
                return "not started"
            return f"ganesha.nfsd exited with status {self._proc.returncode} (log: {self.paths.log_file})"
        assert self.bind is not None and self.env.spec is not None
        return await rpc_null(self.bind, self.env.spec.nfs.port, min(5.0, self.spec.timeout))

    async def stop(self) -> bool:
        proc, self._proc = self._proc, None
        gone = await stop_child(proc, self.spec.stop_timeout, self.spec.kill_timeout)
        if gone:
            self.paths.pid_file.unlink(missing_ok=True)
        return gone

    def describe(self) -> str:
        return shlex.join(ganesha_argv(find_ganesha() or "ganesha.nfsd", self.paths))
