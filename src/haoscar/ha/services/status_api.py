"""Kind ``status-api``: the head's HTTP status API (``haoscar.ha.api``) as a resource of the active head.

It runs inside the daemon's event loop, listening on those of the head's own cluster addresses (private, public,
heartbeat) that are up on this host; the check asks ``GET /status`` over HTTP like any client would.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from haoscar.errors import UserError
from haoscar.ha.api import ApiRunner, ensure_token, local_addresses, start_api
from haoscar.ha.services.base import ServiceEnv, ServiceResource
from haoscar.spec.models import Service


class StatusApiService(ServiceResource):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        super().__init__(spec, env)
        self.runner: ApiRunner | None = None

    @property
    def port(self) -> int:
        return self.spec.port or self.env.ha.api_port

    def candidates(self) -> list[str]:
        head = self.env.head
        if head is None:
            return ["127.0.0.1"] if self.env.spec is None else []
        return [str(ip) for ip in (head.private_ip, head.public_ip, head.heartbeat_ip) if ip is not None]

    async def start(self) -> None:
        if self.runner is not None:
            return
        provider = self.env.api_provider
        if provider is None:
            raise self.fail("no status provider was given to the resource group")
        addresses = local_addresses(self.candidates())
        if not addresses:
            raise self.fail(f"none of {self.env.node}'s cluster addresses ({', '.join(self.candidates())}) is up")
        token_file = Path(self.env.ha.api_token_file)
        if not token_file.is_absolute():
            token_file = self.env.state_dir / token_file
        try:
            ensure_token(token_file)
            self.runner = await start_api(addresses, self.port, token_file, provider)
        except UserError as exc:
            raise self.fail(exc.message) from None
        except OSError as exc:
            raise self.fail(f"cannot listen on port {self.port}: {exc.strerror or exc}") from None
        await self.wait_ready()

    async def check(self) -> str | None:
        if self.runner is None:
            return "not started"
        address = self.runner.addresses[0]
        url = f"http://{address}:{self.port}/status"
        try:
            timeout = aiohttp.ClientTimeout(total=self.spec.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                if response.status != 200:
                    return f"GET {url} answered HTTP {response.status}"
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"GET {url} failed: {exc or type(exc).__name__}"
        return None

    async def stop(self) -> bool:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.close()
        return True
