"""The status API of a head: ``GET /status`` for anyone who reaches it (the public form, ``ha.status_public``: no
paths, commands or key ids; the full status for holders of the token), and the role changes (``POST /switchover``,
``/failback``, ``/takeover``) for holders of the token, over TLS with the cluster CA (``haoscar.tlsca``).

It listens only on the head's own cluster addresses, never on a wildcard, and the token comes from a file that only
its owner may read: a token another user could read would let that user move the cluster's head role. The
listeners run in their own process (``haoscar.ha.apiserver``), never in the HA daemon's event loop, on a server with
connection caps and deadlines (``haoscar.ha.httpserve``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import ssl
import stat
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from haoscar.errors import UserError
from haoscar.ha.httpserve import CappedServer, Handler, Limits, Request, Response
from haoscar.ha.status_public import public_status
from haoscar.keys import write_secret
from haoscar.tlsca import client_context

DEFAULT_CA = Path("/etc/haoscar/tls/ca.crt")
# The token API: few legitimate clients (operators, scripts); a switchover may take a while to answer.
API_LIMITS = Limits(max_connections=32, per_client=4, header_bytes=8 * 1024, body_bytes=4 * 1024)
# The read-only status: the peer head and the CLI; no body at all.
STATUS_LIMITS = Limits(max_connections=32, per_client=4, header_bytes=4 * 1024, body_bytes=0, handler_timeout=5.0)


class ApiProvider(Protocol):
    """What the status API serves: the daemon's status and its role-changing operations. ``status`` may be a
    coroutine (the API process asks the daemon over its control socket)."""

    def status(self) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...

    async def switchover(self) -> Any: ...

    async def failback(self) -> Any: ...

    async def takeover(self, force: bool) -> Any: ...


def read_token(path: Path) -> str:
    """The token of a 0600 file; UserError naming the fix when the file is missing, readable by others, or empty.

    Opened without following a link and checked on the open file (owner, type, mode), so a local user cannot swap
    in a file of their own between the check and the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"API token file {path} does not exist; create it with `haoscar ha api-token`") from None
    except OSError as exc:
        raise UserError(f"API token file {path} cannot be opened ({exc.strerror}); it must be a regular file") from None
    with os.fdopen(fd) as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"API token file {path} is not a regular file")
        if st.st_uid not in (0, os.geteuid()):
            raise UserError(f"API token file {path} belongs to uid {st.st_uid}, not root; remove it and recreate it")
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise UserError(f"API token file {path} has mode {mode:04o}, readable by others; run `chmod 600 {path}`")
        token = handle.read().strip()
    if len(token) < 16:
        raise UserError(f"API token file {path} holds no token of at least 16 characters; recreate it")
    return token


def ensure_token(path: Path) -> str:
    """The token in ``path``, created (mode 0600, from the kernel's CSPRNG) when the file does not exist yet,
    through ``keys.write_secret`` (no link followed, no directory a local user could write)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.path.lexists(path):
        write_secret(path, secrets.token_urlsafe(32) + "\n", force=False, what="API token file")
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


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _authorize(request: Request, token: str) -> Response | None:
    given = _bearer(request)
    if given is None:
        return Response(
            401,
            {"error": "this request changes the cluster; send Authorization: Bearer <token>"},
            {"WWW-Authenticate": 'Bearer realm="haoscar"'},
        )
    if not hmac.compare_digest(given.encode(), token.encode()):
        return Response(403, {"error": "the token is wrong"})
    return None


async def _status(provider: ApiProvider, full: bool) -> Response:
    status = provider.status()
    if isinstance(status, Awaitable):
        status = await status
    return Response(200, status if full else public_status(status))


async def _action(name: str, call: Awaitable[Any]) -> Response:
    try:
        result = await call
    except UserError as exc:
        return Response(409, {"ok": False, "action": name, "error": exc.message})
    except Exception as exc:
        return Response(500, {"ok": False, "action": name, "error": f"{type(exc).__name__}: {exc}"})
    return Response(200, {"ok": True, "action": name, "result": result})


def _takeover_force(request: Request) -> bool | Response:
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    if request.body:
        try:
            body = json.loads(request.body)
        except ValueError:
            return Response(400, {"error": 'the body must be JSON, e.g. {"force": true}'})
        force = force or (isinstance(body, dict) and body.get("force") is True)
    return force


def make_handler(provider: ApiProvider, token: str | None) -> Handler:
    """``GET /status`` for anyone who reaches the listener, in its public form (``ha.status_public``: no paths,
    commands or key ids); with a token, the full status and the three role changes for its holders
    (``token=None``: the read-only status listener, no other route)."""

    async def handle(request: Request) -> Response:
        if request.path == "/status":
            if request.method not in ("GET", "HEAD"):
                return Response(405, {"error": "GET /status"}, {"Allow": "GET"})
            if token is None or _bearer(request) is None:
                return await _status(provider, full=False)
            refused = _authorize(request, token)
            return refused if refused is not None else await _status(provider, full=True)
        if token is None or request.path not in ("/switchover", "/failback", "/takeover"):
            return Response(404, {"error": f"no route {request.path}"})
        if request.method != "POST":
            return Response(405, {"error": f"POST {request.path}"}, {"Allow": "POST"})
        refused = _authorize(request, token)
        if refused is not None:
            return refused
        if request.path == "/switchover":
            return await _action("switchover", provider.switchover())
        if request.path == "/failback":
            return await _action("failback", provider.failback())
        force = _takeover_force(request)
        if isinstance(force, Response):
            return force
        return await _action("takeover", provider.takeover(force))

    return handle


@dataclass
class ApiRunner:
    server: CappedServer
    addresses: list[str]
    port: int
    urls: list[str] = field(default_factory=list)

    async def close(self, grace: float = 0.0) -> None:
        await self.server.close(grace)


async def start_api(
    bind_addresses: list[str],
    port: int,
    token_file: Path,
    provider: ApiProvider,
    *,
    tls: ssl.SSLContext,
    limits: Limits | None = None,
) -> ApiRunner:
    """Serve the API over TLS on exactly ``bind_addresses``:``port``. Raises UserError for a wildcard address or
    a token file others can read; OSError when an address cannot be bound (not this host's, or the port is
    taken). There is no plain-HTTP variant: the token never crosses the wire in clear."""
    addresses = check_bind_addresses(bind_addresses)
    token = read_token(token_file)
    server = CappedServer(make_handler(provider, token), limits or API_LIMITS, tls)
    await server.start(addresses, port)
    return ApiRunner(server, addresses, port, [f"https://{a}:{port}" for a in addresses])


async def start_status_listener(
    bind_addresses: list[str], port: int, provider: ApiProvider, limits: Limits | None = None
) -> ApiRunner:
    """Serve the read-only ``GET /status`` on exactly ``bind_addresses``:``port`` (OSError when one cannot be bound).
    Plain HTTP: it carries no token and changes nothing, and every head's tools read it (``ha status``)."""
    addresses = check_bind_addresses(bind_addresses)
    server = CappedServer(make_handler(provider, None), limits or STATUS_LIMITS)
    await server.start(addresses, port)
    return ApiRunner(server, addresses, port, [f"http://{a}:{port}" for a in addresses])


def default_ca(token_file: Path) -> Path:
    """Where a head keeps the cluster CA: ``tls/ca.crt`` beside the API token."""
    return token_file.parent / "tls" / "ca.crt"


def call_api(
    address: str,
    port: int,
    action: str = "status",
    token: str | None = None,
    timeout: float = 5.0,
    *,
    ca_file: Path = DEFAULT_CA,
    **body: Any,
) -> tuple[int, dict[str, Any]]:
    """A blocking client for the CLI: ``(HTTP status, JSON body)`` of GET /status or POST /<action>, over TLS to a
    server whose certificate the cluster CA ``ca_file`` signed for ``address`` (any other is refused:
    ``ssl.SSLCertVerificationError``). So the token is only ever sent encrypted, and only to a head."""
    import http.client  # here: the listener process never needs it, and starts faster without it

    data = None if action == "status" else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPSConnection(address, port, timeout=timeout, context=client_context(ca_file))
    try:
        connection.request("GET" if data is None else "POST", f"/{action}", body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = {"error": response.reason}
    return response.status, payload
