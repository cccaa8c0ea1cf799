"""What the console's handlers share: the state directory, how to make an ``Env`` for one request, the settings.

Every request gets a fresh ``Env`` (as each CLI invocation does) over one database opened once per server process
(``commands.shared_env``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from haoscar.commands.env import Clock, Env
from haoscar.commands.shared_env import shared_env_factory

DEFAULT_PORT = 8443
DEFAULT_CONSOLE_DIR = Path("/etc/haoscar/web")  # the console's certificate and key (replicated with /etc/haoscar)
DEFAULT_TLS_DIR = Path("/etc/haoscar/tls")  # the cluster CA


@dataclass(frozen=True)
class WebSettings:
    """How the console listens and what it allows (docs/web.md#limits); tests shorten the times."""

    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_dir: Path = DEFAULT_TLS_DIR
    console_dir: Path = DEFAULT_CONSOLE_DIR
    session_ttl_s: float = 8 * 3600.0  # absolute: a login lasts a working day at most
    idle_ttl_s: float = 30 * 60.0  # idle: half an hour without a request ends it
    session_touch_s: float = 15.0
    max_body: int = 1024 * 1024  # request bodies (forms, JSON): 413 beyond
    max_field_size: int = 8190  # one header line / field (aiohttp's parser)
    max_headers: int = 64
    keepalive_s: float = 15.0  # an idle connection, or one that sends nothing (or half a request), is closed after
    handshake_s: float = 5.0  # TLS handshake deadline
    body_timeout_s: float = 15.0  # reading a form's body
    max_connections: int = 128
    login_free: int = 5  # failed logins before each next one waits (commands.web_sessions.Throttle)
    login_window_s: float = 900.0
    login_base_s: float = 2.0
    login_cap_s: float = 60.0
    secure_cookies: bool = True  # False only for tests over plain HTTP on loopback


@dataclass
class WebContext:
    state_dir: Path
    make_env: Callable[[], Env]  # a fresh commands.env.Env for one request (same options as the CLI's)
    settings: WebSettings = field(default_factory=WebSettings)


CTX: web.AppKey[WebContext] = web.AppKey("haoscar", WebContext)


def web_context(state_dir: Path, settings: WebSettings | None = None, clock: Clock | None = None) -> WebContext:
    """The context of a server (or a test, with its own ``clock``) on ``state_dir``."""
    return WebContext(state_dir, shared_env_factory(state_dir, clock), settings or WebSettings())
