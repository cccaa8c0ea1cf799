"""The status API of a head: ``GET /status`` for anyone on the cluster's networks, and the role changes
(``POST /switchover``, ``/failback``, ``/takeover``) for holders of the token.

It listens only on the head's own cluster addresses, never on a wildcard, and the token comes from a file that only
its owner may read: a token another user could read would let that user move the cluster's head role.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from haoscar.errors import UserError


class ApiProvider(Protocol):
    """What the status API serves: the daemon's status and its role-changing operations."""

    def status(self) -> dict[str, Any]: ...

    async def switchover(self) -> Any: ...

    async def failback(self) -> Any: ...

    async def takeover(self, force: bool) -> Any: ...


PROVIDER_KEY: web.AppKey[ApiProvider] = web.AppKey("provider", ApiProvider)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)


def read_token(path: Path) -> str:
    """The token of a 0600 file; UserError naming the fix when the file is missing, readable by others, or empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"API token file {path} does not exist; create it with `haoscar ha api-token`") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"API token file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise UserError(
            f"API token file {path} has mode {stat.S_IMODE(st.st_mode):04o}, readable by others; run `chmod 600 {path}`"
        )
    token = path.read_text().strip()
    if len(token) < 16:
        raise UserError(f"API token file {path} holds no token of at least 16 characters; recreate it")
    return token


def ensure_token(path: Path) -> str:
    """The token in ``path``, created (mode 0600, from the kernel's CSPRNG) when the file does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return read_token(path)


def check_bind_addresses(addresses: list[str]) -> list[str]:
    if not addresses:
        raise UserError("the status API needs at least one of the head's own addresses to listen on")
    out = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UserError(f"{text!r} is not an IP address; the status API binds to the head's addresses") from None
        if ip.is_unspecified:
            raise UserError(f"{text} would listen on every interface; give the head's own cluster addresses")
        out.append(str(ip))
    return out


def local_addresses(candidates: list[str]) -> list[str]:
    """Those of ``candidates`` that are assigned to this host (a bind test, so no netlink is needed)."""
    out = []
    for address in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, 0))
            except OSError:
                continue
        out.append(address)
    return out


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        given = _bearer(request)
        if given is None:
            return web.json_response(
                {"error": "this request changes the cluster; send Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="haoscar"'},
            )
        if not hmac.compare_digest(given.encode(), request.app[TOKEN_KEY].encode()):
            return web.json_response({"error": "the token is wrong"}, status=403)
    response: web.StreamResponse = await handler(request)
    return response


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[PROVIDER_KEY].status(), dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str)


async def _action(request: web.Request, name: str, call: Any) -> web.Response:
    try:
        result = await call
    except UserError as exc:
        return web.json_response({"ok": False, "action": name, "error": exc.message}, status=409)
    except Exception as exc:
        return web.json_response({"ok": False, "action": name, "error": f"{type(exc).__name__}: {exc}"}, status=500)
    return web.json_response({"ok": True, "action": name, "result": result}, dumps=_dumps)


async def _switchover(request: web.Request) -> web.Response:
    return await _action(request, "switchover", request.app[PROVIDER_KEY].switchover())


async def _failback(request: web.Request) -> web.Response:
    return await _action(request, "failback", request.app[PROVIDER_KEY].failback())


async def _takeover(request: web.Request) -> web.Response:
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": 'the body must be JSON, e.g. {"force": true}'}, status=400)
        force = force or (isinstance(body, dict) and body.get("force") is True)
    return await _action(request, "takeover", request.app[PROVIDER_KEY].takeover(force))


def make_app(provider: ApiProvider, token: str) -> web.Application:
    app = web.Application(middlewares=[_auth], client_max_size=64 * 1024)
    app[PROVIDER_KEY] = provider
    app[TOKEN_KEY] = token
    app.router.add_get("/status", _status)
    app.router.add_post("/switchover", _switchover)
    app.router.add_post("/failback", _failback)
    app.router.add_post("/takeover", _takeover)
    return app


def make_status_app(provider: ApiProvider) -> web.Application:
    """Only ``GET /status``: what every head serves in any role, so that ``haoscar ha status`` on one head can show
    the other. Nothing here changes state, so it needs no token."""
    app = web.Application(client_max_size=4 * 1024)
    app[PROVIDER_KEY] = provider
    app.router.add_get("/status", _status)
    return app


@dataclass
class ApiRunner:
    runner: web.AppRunner
    addresses: list[str]
    port: int
    urls: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_api(bind_addresses: list[str], port: int, token_file: Path, provider: ApiProvider) -> ApiRunner:
    """Serve the API on exactly ``bind_addresses``:``port``. Raises UserError for a wildcard address or a token
    file others can read; OSError when an address cannot be bound (not this host's, or the port is taken)."""
    addresses = check_bind_addresses(bind_addresses)
    token = read_token(token_file)
    runner = web.AppRunner(make_app(provider, token), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for address in addresses:
            await web.TCPSite(runner, address, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ApiRunner(runner, addresses, port, [f"http://{a}:{port}" for a in addresses])


async def start_status_listener(bind_addresses: list[str], port: int, provider: ApiProvider) -> ApiRunner:
    """Serve the read-only ``GET /status`` on exactly ``bind_addresses``:``port`` (OSError when one cannot be bound)."""
    addresses = check_bind_addresses(bind_addresses)
    runner = web.AppRunner(make_status_app(provider), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for address in addresses:
            await web.TCPSite(runner, address, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return ApiRunner(runner, addresses, port, [f"http://{a}:{port}" for a in addresses])


def call_api(
    address: str, port: int, action: str = "status", token: str | None = None, timeout: float = 5.0, **body: Any
) -> tuple[int, dict[str, Any]]:
    """A blocking client for the CLI: ``(HTTP status, JSON body)`` of GET /status or POST /<action>."""
    url = f"http://{address}:{port}/{action}"
    data = None if action == "status" else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {"error": exc.reason}
        return exc.code, payload
