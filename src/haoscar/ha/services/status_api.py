"""Kind ``status-api``: the head's token API (``haoscar.ha.api``) as a resource of the active head.

It runs in a process of its own (``python -m haoscar.ha.apiserver``), never in the daemon's event loop, and asks
the daemon over its control socket: on a head's daemon the process every head runs for its read-only status
(``SharedListener``), which binds the TLS API on command; elsewhere, or when that process is gone, a process of
the service's own. It listens over TLS with this head's certificate from the cluster CA
(``haoscar.tlsca``; made on first start when there is none, like the token) on the head's private and heartbeat
addresses that are up on this host, and on its public address only with ``ha.api_public: true``. The check sees
that the process is there at every ``interval`` and asks ``GET /status`` over TLS, pinned to the cluster CA, like
any client would, every ``probe_interval`` (``ProbePacer``: at every check until it first answers and after a
failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path

from haoscar.errors import UserError
from haoscar.ha.api import ensure_token, local_addresses
from haoscar.ha.apiserver import ApiProcess, SharedApi, SharedListener, WarmProcess, prestart, shared_listener
from haoscar.ha.control import control_path
from haoscar.ha.services.base import ProbePacer, ServiceEnv, ServiceResource
from haoscar.spec.models import Service
from haoscar.tlsca import client_context


class StatusApiService(ServiceResource):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self.runner: ApiProcess | SharedApi | None = None
        self._warm: asyncio.Task[WarmProcess | SharedListener | None] | None = None
        self._client: tuple[tuple[float, int], ssl.SSLContext] | None = None  # (ca.crt's mtime and size, context)
        self._pacer = ProbePacer(spec.probe_interval)
        self._prewarm()

    def _prewarm(self) -> None:
        """On a head's daemon (a spec, a running loop), the API's process is there ahead of need: the daemon's
        status listener (its certificate checked now), else a process of its own that waits. A takeover then only
        has it bind (milliseconds), not start Python (~0.2 s on the failover's path)."""
        if self.env.spec is None or self._warm is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._warm = asyncio.ensure_future(self._prestart())

    async def _prestart(self) -> WarmProcess | SharedListener | None:
        shared = await shared_listener(self._control)
        timeout = self.spec.timeout + 10
        if shared is not None and await shared.prepare(self.tls_dir, self.env.node, self.cert_addresses(), timeout):
            return shared
        try:
            return await self._prestart_or_raise()
        except (UserError, OSError):
            return None  # started cold at start(), which then reports why

    @property
    def _control(self) -> Path:
        return control_path(self.env.state_dir)

    @property
    def port(self) -> int:
        return self.spec.port or self.env.ha.api_port

    @property
    def token_file(self) -> Path:
        token_file = Path(self.env.ha.api_token_file)
        return token_file if token_file.is_absolute() else self.env.state_dir / token_file

    @property
    def tls_dir(self) -> Path:
        return self.token_file.parent / "tls"

    def candidates(self) -> list[str]:
        head = self.env.head
        if head is None:
            return ["127.0.0.1"] if self.env.spec is None else []
        public = head.public_ip if self.env.ha.api_public else None
        return [str(ip) for ip in (head.private_ip, head.heartbeat_ip, public) if ip is not None]

    def cert_addresses(self) -> list[str]:
        """Every address of this head, public too: the certificate stays valid whatever ``ha.api_public`` says."""
        head = self.env.head
        if head is None:
            return self.candidates()
        return [str(ip) for ip in (head.private_ip, head.heartbeat_ip, head.public_ip) if ip is not None]

    def pid(self) -> int | None:
        return self.runner.pid if self.runner is not None else None

    async def start(self) -> None:
        if self.runner is not None:
            return
        addresses = local_addresses(self.candidates())
        if not addresses:
            raise self.fail(f"none of {self.env.node}'s cluster addresses ({', '.join(self.candidates())}) is up")
        warm_task, self._warm = self._warm, None
        timeout = self.spec.timeout + 10
        try:
            ensure_token(self.token_file)
            # Not prepared ahead (no spec, no loop at construction): the daemon's status listener all the same.
            warm = await warm_task if warm_task is not None else await shared_listener(self._control)
            if isinstance(warm, SharedListener):
                self.runner = await warm.open_api(
                    addresses, self.port, token_file=self.token_file, tls_dir=self.tls_dir, node=self.env.node,
                    timeout=timeout,
                )  # fmt: skip
                warm = None
            if self.runner is None:
                if warm is None or warm.proc.returncode is not None:
                    warm = await self._prestart_or_raise()
                self.runner = await warm.go(addresses, timeout)
        except UserError as exc:
            raise self.fail(exc.message) from None
        await self.wait_ready(self.runner.proc)

    async def check(self) -> str | None:
        if self.runner is None:
            return "not started"
        if self.runner.proc.returncode is not None:
            return f"the API process exited with status {self.runner.proc.returncode}"
        if not self._pacer.due(self.runner):
            return None  # it answered less than probe_interval ago, and its process is there
        return self._pacer.record(self.runner, await self._probe(self.runner))

    async def _probe(self, runner: ApiProcess | SharedApi) -> str | None:
        address = runner.addresses[0]
        url = f"https://{address}:{self.port}/status"
        try:
            status, _ = await asyncio.wait_for(
                _get_status(address, self.port, self._client_context()), self.spec.timeout
            )
        except (OSError, ssl.SSLError, ValueError, UserError, TimeoutError) as exc:
            return f"GET {url} failed: {exc or type(exc).__name__}"
        if status != 200:
            return f"GET {url} answered HTTP {status}"
        return None

    def _client_context(self) -> ssl.SSLContext:
        """The check's TLS client context, built again only when ``ca.crt`` changed (loading the CA for every check,
        once a second, was a visible part of an idle head's CPU)."""
        ca = self.tls_dir / "ca.crt"
        st = ca.stat()
        stamp = (st.st_mtime, st.st_size)
        if self._client is None or self._client[0] != stamp:
            self._client = (stamp, client_context(ca))
        return self._client[1]

    async def _prestart_or_raise(self) -> WarmProcess:
        return await prestart(
            control_path(self.env.state_dir),
            self.port,
            token_file=self.token_file,
            tls_dir=self.tls_dir,
            node=self.env.node,
            cert_addresses=self.cert_addresses(),
            timeout=self.spec.timeout + 10,
        )

    async def stop(self) -> bool:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.close()
        self._prewarm()  # ready for the next takeover
        return True


async def _get_status(address: str, port: int, tls: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    """``GET /status`` over TLS without leaving the event loop (the check runs on the daemon's loop)."""
    reader, writer = await asyncio.open_connection(address, port, ssl=tls, server_hostname=address)
    try:
        writer.write(f"GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body or b"{}")
