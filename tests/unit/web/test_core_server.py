"""The real server: HTTPS only with a certificate from the cluster CA, Secure cookies, slow and idle clients
dropped, a cap on connections."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from webtest import ADMIN, PASSWORD, add_admin

from haoscar.commands.env import Env
from haoscar.commands.web_tls import ConsoleCert, ensure_console_cert
from haoscar.errors import FieldError, UserError
from haoscar.tlsca import cert_addresses, client_context, ensure_ca, server_context
from haoscar.web.context import WebContext, WebSettings, web_context
from haoscar.web.server import start


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A cluster CA and the console's certificate for 127.0.0.1."""
    root = tmp_path_factory.mktemp("tls")
    ensure_ca(root / "tls")
    with Env(state_dir=root / "state") as env:
        made = ensure_console_cert(env, ConsoleCert(root / "tls", root / "web", "127.0.0.1"))
    assert made.issued
    return root / "tls", root / "web"


def test_the_console_certificate_is_signed_by_the_cluster_ca_and_its_key_private(tls: tuple[Path, Path]) -> None:
    tls_dir, web_dir = tls
    assert cert_addresses(web_dir / "console.crt") == {"127.0.0.1"}
    assert stat.S_IMODE(os.stat(web_dir / "console.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(web_dir).st_mode) == 0o700
    with Env(state_dir=web_dir.parent / "state") as env:
        again = ensure_console_cert(env, ConsoleCert(tls_dir, web_dir, "127.0.0.1"))
        assert not again.issued  # kept: it names the address and the CA signed it
        with pytest.raises(FieldError, match="is every address") as caught:
            ensure_console_cert(env, ConsoleCert(tls_dir, web_dir, "0.0.0.0"))
        assert caught.value.field == "bind"
        with pytest.raises(FieldError, match="'alias' is not an IP address"):
            ensure_console_cert(env, ConsoleCert(tls_dir, web_dir, "127.0.0.1", ("alias",)))


def test_a_head_without_the_ca_key_says_what_to_do(tls: tuple[Path, Path], tmp_path: Path) -> None:
    tls_dir, _ = tls
    standby_tls = tmp_path / "tls"
    standby_tls.mkdir()
    (standby_tls / "ca.crt").write_bytes((tls_dir / "ca.crt").read_bytes())
    with Env(state_dir=tmp_path / "state") as env, pytest.raises(UserError, match="has no CA key"):
        ensure_console_cert(env, ConsoleCert(standby_tls, tmp_path / "web", "127.0.0.1"))
    assert not (tmp_path / "web" / "console.key").exists()


async def _serve(ctx: WebContext, tls: tuple[Path, Path]) -> tuple[object, asyncio.Server, int]:
    tls_dir, web_dir = tls
    files = ensure_console_cert(ctx.make_env(), ConsoleCert(tls_dir, web_dir, "127.0.0.1")).files()
    runner, server = await start(ctx, server_context(files))
    return runner, server, server.sockets[0].getsockname()[1]


def _ctx(tmp_path: Path, **settings: object) -> WebContext:
    add_admin(tmp_path / "state")
    return web_context(tmp_path / "state", replace(WebSettings(), bind="127.0.0.1", port=0, **settings))  # type: ignore[arg-type]


def test_https_login_with_secure_cookies(tls: tuple[Path, Path], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)

    async def scenario() -> None:
        runner, server, port = await _serve(ctx, tls)
        base = f"https://127.0.0.1:{port}"
        client_tls = client_context(tls[0] / "ca.crt")
        try:
            jar = aiohttp.CookieJar(unsafe=True)  # the console is reached by IP address
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls), cookie_jar=jar) as http:
                async with http.get(base + "/login") as response:
                    assert response.status == 200
                    cookie = response.headers["Set-Cookie"]
                    assert cookie.startswith("__Host-haoscar-login=") and "Secure" in cookie and "HttpOnly" in cookie
                    token = response.cookies["__Host-haoscar-login"].value
                form = {"name": ADMIN, "password": PASSWORD, "csrf_token": token, "next": "/"}
                async with http.post(base + "/login", data=form, headers={"Origin": base}, allow_redirects=False) as r:
                    assert r.status == 303
                    assert "__Host-haoscar-session=" in r.headers["Set-Cookie"]
                    assert all(
                        w in r.headers["Set-Cookie"] for w in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/")
                    )
            # Plain HTTP on the console's port gets no HTTP answer.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(100), 30)
            assert not answer.startswith(b"HTTP/")
            writer.close()
        finally:
            server.close()
            await runner.cleanup()  # type: ignore[attr-defined]

    asyncio.run(scenario())


async def _tls_connection(port: int, ca: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = client_context(ca)
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(4096), 60) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_idle_and_half_sent_requests_are_dropped(tls: tuple[Path, Path], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, keepalive_s=1.0)

    async def scenario() -> None:
        runner, server, port = await _serve(ctx, tls)
        try:
            silent_reader, _ = await _tls_connection(port, tls[0] / "ca.crt")
            half_reader, half_writer = await _tls_connection(port, tls[0] / "ca.crt")
            half_writer.write(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
            await half_writer.drain()
            assert await _closed_by_server(silent_reader)
            assert await _closed_by_server(half_reader)
        finally:
            server.close()
            await runner.cleanup()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_connections_beyond_the_cap_are_closed(tls: tuple[Path, Path], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, max_connections=2, keepalive_s=120.0)

    async def scenario() -> None:
        runner, server, port = await _serve(ctx, tls)
        ca = tls[0] / "ca.crt"
        try:
            held = [await _tls_connection(port, ca) for _ in range(2)]
            await asyncio.sleep(0.2)  # let the server register both
            extra_reader, _ = await _tls_connection(port, ca)
            assert await _closed_by_server(extra_reader)
            # The two held connections still work.
            reader, writer = held[0]
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 200")
        finally:
            server.close()
            await runner.cleanup()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_haoscar_web_serve_prints_its_url_serves_https_and_stops_on_sigterm(
    tls: tuple[Path, Path], tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    tls_dir, web_dir = tls
    port = _free_port()
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(tmp_path / "state"), "web", "serve"]
    argv += ["--bind", "127.0.0.1", "--port", str(port), "--tls-dir", str(tls_dir), "--console-dir", str(web_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"serving the haoscar console at https://127.0.0.1:{port}/", proc.stderr
        context = client_context(tls_dir / "ca.crt")
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=30) as answer:
            assert answer.read() == b"ok\n"
            assert answer.headers["X-Frame-Options"] == "DENY"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        assert "no administrator yet" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "0.0.0.0"], "error: --bind 0.0.0.0 is every address"),
        (["--bind", "head1"], "error: --bind 'head1' is not an IP address"),
        (["--port", "70000"], "error: --port 70000 is not a TCP port"),
        (["--idle-ttl", "0"], "error: --idle-ttl 0 is out of range"),
        (["--tls-dir", "/nonexistent/tls"], "error: the cluster CA /nonexistent/tls/ca.crt does not exist"),
    ],
)
def test_haoscar_web_serve_bad_input_exits_2(
    haoscar: Callable[..., tuple[int, str, str]], tls: tuple[Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    tls_dir, _ = tls
    argv = ["--state-dir", str(tmp_path / "s"), "web", "serve", "--tls-dir", str(tls_dir)]
    argv += ["--console-dir", str(tmp_path / "web"), *args]
    code, _, err = haoscar(*argv)
    assert code == 2 and message in err, err
    assert not (tmp_path / "web").exists()


def test_a_key_that_is_not_the_certificates_is_replaced(tls: tuple[Path, Path], tmp_path: Path) -> None:
    tls_dir, web_dir = tls
    copy = tmp_path / "web"
    copy.mkdir(mode=0o700)
    (copy / "console.crt").write_bytes((web_dir / "console.crt").read_bytes())
    ensure_ca(tmp_path / "other-ca")  # a key of another pair, e.g. left by a crash between the two writes
    (copy / "console.key").write_bytes((tmp_path / "other-ca" / "ca.key").read_bytes())
    with Env(state_dir=tmp_path / "state") as env:
        made = ensure_console_cert(env, ConsoleCert(tls_dir, copy, "127.0.0.1"))
    assert made.issued
    server_context(made.files())  # loads: the pair matches now
