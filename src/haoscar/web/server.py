"""Serving the console: HTTPS only, with the connection cap and deadlines of docs/web.md#limits.

aiohttp's ``AppRunner`` provides the request handler; the listening socket and the TLS server are made here so that
the TLS handshake has a deadline (``handshake_s``) and connections beyond ``max_connections`` are closed at once
instead of queueing. A client that sends nothing, or half a request, is closed after ``keepalive_s`` (aiohttp arms
its keep-alive timer when the connection is made); a form's body must arrive within ``body_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from haoscar.commands.web_sessions import purge_expired
from haoscar.tlsca import listening_socket
from haoscar.web.app import create_app
from haoscar.web.context import WebContext

log = logging.getLogger(__name__)
PURGE_EVERY_S = 600.0


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


def console_url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}/" if ":" in host else f"https://{host}:{port}/"


async def start(ctx: WebContext, tls: ssl.SSLContext) -> tuple[web.AppRunner, asyncio.Server]:
    """The console listening on ``ctx.settings.bind``:``port`` (running until the runner is cleaned up)."""
    settings = ctx.settings
    runner = web.AppRunner(create_app(ctx), access_log=logging.getLogger("haoscar.web.access"))
    await runner.setup()
    handler = runner.server
    assert handler is not None

    def factory() -> asyncio.Protocol:
        if len(handler.connections) >= settings.max_connections:
            log.warning("connection refused: %d connections open", len(handler.connections))
            return _Refused()
        return handler()

    sock = listening_socket(settings.bind, settings.port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock, ssl=tls, ssl_handshake_timeout=settings.handshake_s)
    return runner, server


async def _purge(ctx: WebContext) -> None:
    settings = ctx.settings
    while True:
        await asyncio.sleep(PURGE_EVERY_S)
        env = ctx.make_env()
        try:
            await asyncio.to_thread(purge_expired, env, settings.session_ttl_s, settings.idle_ttl_s)
        except Exception:
            log.exception("purging expired sessions failed")
        finally:
            env.close()


async def serve(ctx: WebContext, tls: ssl.SSLContext, ready: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; ``ready(url)`` once the socket listens."""
    runner, server = await start(ctx, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    purger = asyncio.create_task(_purge(ctx))
    try:
        ready(console_url(ctx.settings.bind, ctx.settings.port))
        await stop.wait()
    finally:
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        server.close()
        await runner.cleanup()
        await server.wait_closed()
