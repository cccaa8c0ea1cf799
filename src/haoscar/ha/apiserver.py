"""``python -m haoscar.ha.apiserver``: a head's network listeners for status and API, in a process of their own.

The HA daemon's event loop never serves a connection from the network (issue 10, finding 4): a stranger who
floods these listeners exhausts at most this process, whose caps and deadlines (``haoscar.ha.httpserve``) keep even
that from happening. The process asks the daemon over its root-only UNIX control socket (``haoscar.ha.control``),
the same requests ``haoscar ha status / switchover / failback / takeover`` make on the head itself.

Two modes: the read-only status (``--port`` on the head's cluster addresses, plain HTTP, every head in any role;
its public form only, ``ha.status_public``)
and, with ``--token-file``, the token API over TLS (the ``status-api`` resource of the active head). It dies with
the process that started it (``PR_SET_PDEATHSIG``), so a daemon killed with -9 leaves no listener behind.

With ``--commands`` the status listener also serves the token API when its parent asks (one JSON line on stdin per
command: ``prepare`` checks the certificate ahead of need, ``api`` binds the TLS API, ``api_stop`` closes it):
the ``status-api`` service of a head's daemon uses the process every head runs for its status instead of a second
Python process of its own (~24 MB each; docs/benchmarks.md, bench idle). Both listeners keep their own caps and
deadlines; the daemon's event loop still serves neither.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.ha.api import ApiRunner, start_api, start_status_listener
from haoscar.ha.control import request
from haoscar.tlsca import NodeTls, ensure_node_cert, server_context

NOFILE = 1024  # well above the caps (32 connections per listener); set here so it does not depend on the unit
STATUS_CACHE_S = 0.2  # a flood of GET /status costs the daemon at most one control request per this period


class ControlProvider:
    """The daemon behind its control socket, as the API's provider. One status question at a time, cached for
    ``STATUS_CACHE_S``; role changes one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._status_lock = asyncio.Lock()
        self._ops_lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def status(self) -> dict[str, Any]:
        async with self._status_lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < STATUS_CACHE_S:
                return self._cached[1]
            reply = await asyncio.to_thread(request, self.path, "status", 5.0)
            self._cached = (time.monotonic(), reply)
            return reply

    async def _op(self, op: str, **params: Any) -> dict[str, Any]:
        async with self._ops_lock:
            return await asyncio.to_thread(request, self.path, op, 60.0, **params)

    async def switchover(self) -> Any:
        return await self._op("switchover")

    async def failback(self) -> Any:
        return await self._op("failback")

    async def takeover(self, force: bool) -> Any:
        return await self._op("takeover", force=force)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(0)


def _limit_fds() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _serve(args: argparse.Namespace, tls: NodeTls | None) -> int:
    provider = ControlProvider(args.control)
    runner: ApiRunner
    try:
        if args.token_file is not None:
            if tls is None:
                tls = await asyncio.to_thread(ensure_node_cert, args.tls_dir, args.node, args.listen)
            runner = await start_api(args.listen, args.port, args.token_file, provider, tls=server_context(tls))
        else:
            runner = await start_status_listener(args.listen, args.port, provider)
    except UserError as exc:
        print(json.dumps({"error": exc.message}), flush=True)
        return 2
    except OSError as exc:
        print(json.dumps({"error": f"cannot listen on port {args.port}: {exc.strerror or exc}"}), flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ready": runner.urls, "pid": os.getpid()}), flush=True)
    commands = ApiSlot(provider) if args.commands else None
    reader = asyncio.ensure_future(commands.serve(stop)) if commands is not None else None
    try:
        await stop.wait()
    finally:
        if reader is not None:
            reader.cancel()
        if commands is not None:
            await commands.close()
        await runner.close(grace=2.0)  # a switchover's own answer still goes out while the head demotes
    return 0


class ApiSlot:
    """The token API a status listener process serves beside its status on its parent's command (``--commands``)."""

    def __init__(self, provider: ControlProvider) -> None:
        self.provider = provider
        self.runner: ApiRunner | None = None
        self.tls: dict[tuple[str, str], NodeTls] = {}  # (TLS directory, node) -> checked certificate

    async def serve(self, stop: asyncio.Event) -> None:
        """One command per line on stdin, one JSON answer per command on stdout; stdin's end (the parent is gone)
        stops the process, as a waiting listener's does."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                answer = await self.command(json.loads(line))
            except UserError as exc:
                answer = {"error": exc.message}
            except OSError as exc:
                answer = {"error": f"cannot listen: {exc.strerror or exc}"}
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"error": f"bad command: {exc}"}
            print(json.dumps(answer), flush=True)
        stop.set()

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "prepare":  # the certificate checked (or issued) before a takeover needs it
            await self._tls(message, message["cert_addresses"], fresh=True)
            return {"prepared": True}
        if op == "api":
            await self.close()
            tls = await self._tls(message, message["listen"], fresh=False)
            token_file = Path(message["token_file"])
            listen, port = [str(a) for a in message["listen"]], int(message["port"])
            self.runner = await start_api(listen, port, token_file, self.provider, tls=server_context(tls))
            return {"ready": self.runner.urls, "pid": os.getpid()}
        if op == "api_stop":
            await self.close()
            return {"stopped": True}
        raise ValueError(f"unknown op {op!r}")

    async def _tls(self, message: dict[str, Any], addresses: list[str], fresh: bool) -> NodeTls:
        """The certificate as the last ``prepare`` checked it (each one checks again, as a new waiting process did)."""
        key = (str(message["tls_dir"]), str(message["node"]))
        if fresh or key not in self.tls:
            self.tls[key] = await asyncio.to_thread(ensure_node_cert, Path(key[0]), key[1], addresses)
        return self.tls[key]

    async def close(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.close(grace=2.0)  # a switchover's own answer still goes out while the head demotes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m haoscar.ha.apiserver", description=__doc__)
    parser.add_argument("--control", type=Path, required=True, help="the daemon's control socket")
    parser.add_argument("--listen", action="append", default=[], help="an address of this head (repeat)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, default=None, help="serve the token API over TLS")
    parser.add_argument("--tls-dir", type=Path, default=None, help="the cluster CA and this head's certificate")
    parser.add_argument("--node", default=None, help="this head's host name (its certificate)")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process does")
    parser.add_argument("--warm", action="store_true", help="start, then wait for the addresses on stdin")
    parser.add_argument("--cert-address", action="append", default=[], help="an address the certificate names")
    parser.add_argument("--commands", action="store_true", help="once serving, take token API commands on stdin")
    args = parser.parse_args(argv)
    if args.token_file is not None and (args.tls_dir is None or args.node is None):
        parser.error("--token-file needs --tls-dir and --node")
    if args.parent is not None:
        _die_with_parent(args.parent)
    _limit_fds()
    tls: NodeTls | None = None
    if args.token_file is not None and args.cert_address:
        # The certificate is checked (and issued, where this head holds the CA key) before any takeover needs it.
        try:
            tls = ensure_node_cert(args.tls_dir, args.node, args.cert_address)
        except UserError as exc:
            print(json.dumps({"error": exc.message}), flush=True)
            return 2
    if args.warm:
        # Started ahead of need (Python and its imports take ~0.2 s): a takeover then only binds and serves.
        print(json.dumps({"warm": os.getpid()}), flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0  # the parent went away or no longer needs us
        args.listen = [str(a) for a in json.loads(line)["listen"]]
    if not args.listen:
        parser.error("give at least one --listen address")
    return asyncio.run(_serve(args, tls))


# -- the parent's side ----------------------------------------------------------------------------------------
@dataclass
class ApiProcess:
    """A running listener process: where it listens, and how to stop it."""

    proc: asyncio.subprocess.Process
    addresses: list[str]
    port: int
    urls: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def close(self, timeout: float = 3.0) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


@dataclass
class WarmProcess:
    """A listener process started ahead of need, waiting for the addresses to serve on (``go``)."""

    proc: asyncio.subprocess.Process
    port: int

    async def go(self, addresses: list[str], timeout: float = 10.0) -> ApiProcess:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"listen": addresses}).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it exited: reported by the ready line that never comes
        return await _ready(ApiProcess(self.proc, addresses, self.port), timeout)

    async def close(self) -> None:
        await ApiProcess(self.proc, [], self.port).close()


async def prestart(
    control: Path,
    port: int,
    *,
    token_file: Path | None = None,
    tls_dir: Path | None = None,
    node: str | None = None,
    cert_addresses: list[str] | None = None,
    timeout: float = 10.0,
    commands: bool = False,
) -> WarmProcess:
    """Start a listener process that waits for its addresses; UserError when it does not come up."""
    argv = [sys.executable, "-m", "haoscar.ha.apiserver", "--control", str(control), "--port", str(port), "--warm"]
    argv += ["--parent", str(os.getpid())] + (["--commands"] if commands else [])
    if token_file is not None:
        argv += ["--token-file", str(token_file), "--tls-dir", str(tls_dir), "--node", str(node)]
        argv += [f"--cert-address={a}" for a in cert_addresses or []]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    message = await _line(proc, timeout)
    if "warm" not in message:
        await ApiProcess(proc, [], port).close()
        raise UserError(str(message.get("error") or f"the listener process exited with status {proc.returncode}"))
    return WarmProcess(proc, port)


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    try:
        message = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout) or b"{}")
    except (TimeoutError, ValueError):
        return {"error": f"no answer from the listener process within {timeout:g} s"}
    return message if isinstance(message, dict) else {}


async def _ready(process: ApiProcess, timeout: float) -> ApiProcess:
    message = await _line(process.proc, timeout)
    if "ready" not in message:
        await process.close()
        error = message.get("error") or f"the listener process exited with status {process.proc.returncode}"
        raise UserError(str(error))
    process.urls = [str(url) for url in message["ready"]]
    return process


async def spawn(
    control: Path,
    addresses: list[str],
    port: int,
    *,
    token_file: Path | None = None,
    tls_dir: Path | None = None,
    node: str | None = None,
    timeout: float = 10.0,
    commands: bool = False,
) -> ApiProcess:
    """Start a listener process and wait until it listens. UserError with its reason when it cannot (an address
    not on this host, the port taken, a token file others can read, no certificate to be had). With ``commands``
    it takes token API commands afterwards (``SharedListener``)."""
    warm = await prestart(
        control, port, token_file=token_file, tls_dir=tls_dir, node=node, timeout=timeout, commands=commands
    )
    return await warm.go(addresses, timeout)


# -- one process for the status and the token API ----------------------------------------------------------------
@dataclass
class SharedListener:
    """A head's status listener process (``--commands``), which also serves the token API on command."""

    process: ApiProcess
    broken: bool = False  # an answer did not come in time: later answers would be out of step, so it is not used
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def usable(self) -> bool:
        return not self.broken and self.process.proc.returncode is None

    async def command(self, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The process's answer, or None when it cannot give one (it exited, or did not answer in time)."""
        async with self.lock:
            stdin = self.process.proc.stdin
            if not self.usable or stdin is None:
                return None
            try:
                stdin.write(json.dumps(message).encode() + b"\n")
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                return None
            answer = await _line(self.process.proc, timeout)
            if not answer or ("error" in answer and answer["error"].startswith("no answer from")):
                self.broken = True
                return None
            return answer

    async def prepare(self, tls_dir: Path, node: str, cert_addresses: list[str], timeout: float) -> bool:
        """Check the certificate ahead of a takeover; False when this process cannot serve the API."""
        message = {"op": "prepare", "tls_dir": str(tls_dir), "node": node, "cert_addresses": cert_addresses}
        answer = await self.command(message, timeout)
        return answer is not None and bool(answer.get("prepared"))

    async def open_api(
        self, addresses: list[str], port: int, *, token_file: Path, tls_dir: Path, node: str, timeout: float
    ) -> SharedApi | None:
        """The token API bound in this process; None when the process is unusable (then the caller starts one of
        its own); UserError with the reason the API cannot listen."""
        message = {"op": "api", "listen": addresses, "port": port, "token_file": str(token_file)}
        answer = await self.command({**message, "tls_dir": str(tls_dir), "node": node}, timeout)
        if answer is None:
            return None
        if "ready" not in answer:
            raise UserError(str(answer.get("error") or "the listener process did not open the API"))
        return SharedApi(self, addresses, port, [str(url) for url in answer["ready"]])


@dataclass
class SharedApi:
    """The token API as served by a ``SharedListener``: what the ``status-api`` service holds while it runs."""

    listener: SharedListener
    addresses: list[str]
    port: int
    urls: list[str]

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.listener.process.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def close(self, timeout: float = 5.0) -> None:
        await self.listener.command({"op": "api_stop"}, timeout)


_SHARED: dict[str, asyncio.Future[SharedListener | None]] = {}


def announce_shared(control: Path) -> asyncio.Future[SharedListener | None]:
    """The daemon will start a status listener for ``control`` (set the future's result: the listener, or None
    when it could not start); services built meanwhile wait for it instead of starting a process of their own."""
    future: asyncio.Future[SharedListener | None] = asyncio.get_running_loop().create_future()
    _SHARED[str(control)] = future
    return future


def forget_shared(control: Path) -> None:
    future = _SHARED.pop(str(control), None)
    if future is not None and not future.done():
        future.set_result(None)


async def shared_listener(control: Path) -> SharedListener | None:
    """The status listener the daemon of ``control`` runs, when there is one and it still runs."""
    future = _SHARED.get(str(control))
    if future is None:
        return None
    listener = await asyncio.shield(future)
    return listener if listener is not None and listener.usable else None


if __name__ == "__main__":
    sys.exit(main())
