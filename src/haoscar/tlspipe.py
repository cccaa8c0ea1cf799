"""rsync's daemon protocol over mutual TLS with the cluster CA: the encrypted file-replication channel.

rsync can speak its daemon protocol over any pipe (``rsync -e CMD PEER::module``, "daemon over remote shell"): the
client runs ``CMD PEER rsync --server --daemon .`` and talks to whatever that command connects it to. Here the
command is ``python -m haoscar.tlspipe connect``, which opens a TLS connection to the peer, showing this head's
certificate; the peer's ``python -m haoscar.tlspipe serve`` checks that certificate against the cluster CA and the
peer's address, then runs ``rsync --server --daemon --config=FILE .`` for that one connection, its stdin and stdout
joined to the TLS stream. rsyncd.conf (modules, ``read only``, ``auth users`` with the secrets file, ``hosts allow``)
stays as it is; the rsync daemon no longer listens on the network at all.

Why this rather than rsync over ssh: no sshd configuration, no second key pair per direction, no ssh handshake per
batch; the same CA as the API (``haoscar.tlsca``), and the server side (not the client) chooses the rsync command,
so a client cannot pick another config or module path. Why not stunnel: one more daemon to install and babysit.
Only the kernel is used (``haoscar.tlsca``), so the replication layer can start both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import socket
import ssl
import sys
import threading
from pathlib import Path

from haoscar.tlsca import accepted_streams, client_context, listening_socket, node_files, server_context

HANDSHAKE_TIMEOUT = 5.0
MAX_CONNECTIONS = 8  # rsync runs per batch, one per tree; the peer is the only client
EXIT_TIMEOUT = 10.0  # rsync closed its output (or lost its peer): it has this long to exit before it is killed
CHUNK = 65536


async def _copy_in(reader: asyncio.StreamReader, proc: asyncio.subprocess.Process) -> None:
    """The client's bytes into rsync's stdin until the client's stream ends or breaks (an ``ssl.SSLError`` is an
    ``OSError``); then rsync's stdin is closed, which rsync takes as its peer's end: the half-close, while its output
    is still copied out (rsync itself says "connection unexpectedly closed" if that end came too early)."""
    assert proc.stdin is not None
    try:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                proc.stdin.write(data)
                await proc.stdin.drain()
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


async def _copy_out(
    proc: asyncio.subprocess.Process, writer: asyncio.StreamWriter, inbound: asyncio.Future[None]
) -> None:
    """rsync's output to the client until rsync closes it, every byte drained into the TLS transport. If the
    client's side breaks first, nobody is left to answer rsync: its input is ended (``inbound`` cancelled, so it
    stops) and the rest of its output is read and dropped, so that it never blocks writing it."""
    assert proc.stdout is not None
    broken = False
    while data := await proc.stdout.read(CHUNK):
        if broken:
            continue
        try:
            writer.write(data)
            await writer.drain()
        except OSError:
            broken = True
            inbound.cancel()


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, argv: list[str], env: dict[str, str]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
    )
    inbound = asyncio.ensure_future(_copy_in(reader, proc))
    try:
        await _copy_out(proc, writer, inbound)
        # rsync closed its output, so it is finishing; its input stays joined to the client until it has exited,
        # so that its last reads still get the client's last bytes.
        try:
            await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    finally:
        inbound.cancel()
        await asyncio.gather(inbound, return_exceptions=True)
        # Only now the end of the stream: close() flushes what is still buffered, then TLS's close_notify; the client
        # answers it once it has read everything (asyncio gives that its ssl_shutdown_timeout).
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def serve(
    address: str,
    port: int,
    tls_dir: Path,
    node: str,
    *,
    allow: set[str],
    argv: list[str],
    listen_fd: int | None = None,
    idle_exit: float | None = None,
) -> None:
    """Accept mutual-TLS connections from the addresses in ``allow`` only; run ``argv`` for each. A connection from
    any other address, or over the cap, is closed before the TLS handshake; a handshake has 5 s.

    On demand (the active head's read-only channel, ``replication.rsync.RsyncDaemon``): ``listen_fd`` is a
    listening socket the parent bound and watches, and the server returns once no session has run for
    ``idle_exit`` seconds; the parent starts it again at the next connection, which waits in the socket's backlog."""
    ctx = server_context(node_files(tls_dir, node), require_client_cert=True)
    active = 0

    async def session(conn: socket.socket, peer: tuple[str, int]) -> None:
        nonlocal active
        try:
            reader, writer = await accepted_streams(conn, ctx, handshake_timeout=HANDSHAKE_TIMEOUT)
            # rsync takes the client's address for ``hosts allow`` from SSH_CONNECTION in this mode.
            env = {**os.environ, "SSH_CONNECTION": f"{peer[0]} {peer[1]} {address} {port}"}
            await _session(reader, writer, argv, env)
        except (OSError, ssl.SSLError, TimeoutError):
            pass  # a failed handshake (no certificate from the cluster CA) or a broken link: nothing was run
        finally:
            active -= 1  # asyncio owns (and closes) the socket from the handshake on

    if listen_fd is None:
        listener = listening_socket(address, port)
    else:
        listener = socket.socket(fileno=listen_fd)
        listener.setblocking(False)
    print(f"listening on {address}:{port}", flush=True)
    loop = asyncio.get_running_loop()
    sessions: set[asyncio.Task[None]] = set()
    while True:
        try:
            conn, peer = await asyncio.wait_for(loop.sock_accept(listener), idle_exit)
        except TimeoutError:
            if active == 0:
                return  # on demand and idle: the parent watches the socket again
            continue
        except OSError:
            await asyncio.sleep(0.05)
            continue
        if str(peer[0]) not in allow or active >= MAX_CONNECTIONS:
            conn.close()
            continue
        active += 1
        task = asyncio.ensure_future(session(conn, peer))
        sessions.add(task)
        task.add_done_callback(sessions.discard)


def connect(peer: str, port: int, tls_dir: Path, node: str, timeout: float = 10.0) -> int:
    """Join stdin/stdout to a mutual-TLS connection to ``peer`` (whose certificate must name that address)."""
    return asyncio.run(_connect(peer, port, tls_dir, node, timeout))


class ChannelBroken(Exception):
    """The TLS stream broke, or rsync's end of stdout went away, after the transfer had begun: never a success."""


def _write_all(fd: int, data: bytes) -> None:
    # rsync gives its remote shell a non-blocking stdout (it only makes stdin blocking): a full socket buffer is
    # EAGAIN, which means "wait until rsync has read some", not "rsync is gone".
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _read_some(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:  # a non-blocking stdin: wait for data the same way
            select.select([fd], [], [])


def _pump_stdin(loop: asyncio.AbstractEventLoop, incoming: asyncio.Queue[bytes]) -> None:
    # stdin is read in a thread of its own with plain blocking calls (whatever it is: a pipe, a socket, /dev/null);
    # the TLS connection itself is only ever touched by the loop's thread. b"" marks the end (or a failed read).
    with contextlib.suppress(RuntimeError):  # the loop has closed: the connection is over anyway
        try:
            while data := _read_some(0):
                asyncio.run_coroutine_threadsafe(incoming.put(data), loop).result()
        except OSError:
            pass
        asyncio.run_coroutine_threadsafe(incoming.put(b""), loop).result()


async def _upload(incoming: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
    # At the end of stdin there is nothing to send: an asyncio TLS transport cannot half-close (no write_eof), and
    # rsync's own protocol has told the server it is done; the download goes on until the server ends the stream.
    with contextlib.suppress(OSError):  # the server is gone: the download finds out and says so
        while data := await incoming.get():
            writer.write(data)
            await writer.drain()


async def _download(reader: asyncio.StreamReader) -> None:
    """Copy the server's stream to stdout until the server ends it; a break after the first byte is ChannelBroken."""
    loop = asyncio.get_running_loop()
    received = 0
    try:
        while data := await reader.read(CHUNK):
            received += len(data)
            try:
                await loop.run_in_executor(None, _write_all, 1, data)
            except OSError as exc:  # EPIPE: the local rsync has gone
                raise ChannelBroken(f"writing to rsync after {received} bytes: {exc.strerror or exc}") from exc
    except ssl.SSLError as exc:
        # With TLS 1.3 a server that refuses this head's certificate says so after the client's handshake ended:
        # the first read brings its alert.
        if not received:
            raise
        raise ChannelBroken(f"TLS error after {received} bytes: {exc.reason or exc}") from exc
    except OSError as exc:
        raise ChannelBroken(f"{exc.strerror or exc} after {received} bytes") from exc


async def _connect(peer: str, port: int, tls_dir: Path, node: str, timeout: float) -> int:
    # One thread, one event loop: an SSL connection must not be read and written from two threads at once (a pull,
    # where both directions are busy, broke the stream that way).
    ctx = client_context(tls_dir / "ca.crt", node_files(tls_dir, node))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(peer, port, ssl=ctx, server_hostname=peer, ssl_handshake_timeout=timeout), timeout
    )
    incoming: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)  # bounded: a slow link slows the reading of stdin
    # A daemon thread: a read blocked on stdin never holds up the exit.
    threading.Thread(target=_pump_stdin, args=(asyncio.get_running_loop(), incoming), daemon=True).start()
    sending = asyncio.ensure_future(_upload(incoming, writer))
    try:
        await _download(reader)  # the server ended the stream: rsync's output has all been written to stdout
    finally:
        sending.cancel()
        writer.close()  # close_notify: the server waits for it before it lets the connection go
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return 0


def _connect_cli(peer: str, port: int, tls_dir: Path, node: str, timeout: float) -> int:
    """``connect`` for rsync: one line on stderr instead of a traceback, worded so that the replication tells an
    authentication problem ("auth failed") from an unreachable peer ("connection refused", a timeout)."""
    files = node_files(tls_dir, node)
    missing = [str(path) for path in (files.ca, files.cert, files.key) if not path.is_file()]
    if missing:  # not "cannot connect": that would be retried as an unreachable peer
        print(f"tlspipe: this head's TLS files are missing: {', '.join(missing)}", file=sys.stderr)
        return 255
    try:
        return connect(peer, port, tls_dir, node, timeout)
    except ChannelBroken as exc:
        # rsync's own code for "error in socket IO", which the replication counts as an unreachable peer (retried):
        # a link broken mid-transfer is that, and never a success (rsync also reports the stream's end itself).
        print(f"tlspipe: connection with {peer}:{port} broken: {exc}", file=sys.stderr)
        return 10
    except (ssl.SSLCertVerificationError, ssl.SSLError) as exc:
        print(f"tlspipe: TLS auth failed with {peer}:{port}: {exc.reason or exc}", file=sys.stderr)
    except OSError as exc:
        # asyncio words a refusal "Connect call failed (...)": the errno's own text ("Connection refused") is what
        # tells the replication to retry an unreachable peer.
        reason = (
            os.strerror(exc.errno) if exc.errno else "Connection timed out" if isinstance(exc, TimeoutError) else exc
        )
        print(f"tlspipe: cannot connect to {peer}:{port}: {reason}", file=sys.stderr)
    except Exception as exc:  # a missing certificate or CA file (UserError): say which
        print(f"tlspipe: {exc}", file=sys.stderr)
    return 255


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m haoscar.tlspipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="the receiving head: TLS in, one rsync --server --daemon per connection")
    srv.add_argument("--listen", required=True, help="ADDRESS:PORT")
    srv.add_argument("--allow", action="append", required=True, help="the peer's address (repeat)")
    srv.add_argument("--tls-dir", type=Path, required=True)
    srv.add_argument("--node", required=True, help="this head's host name (its certificate)")
    srv.add_argument("--listen-fd", type=int, default=None, help="an inherited listening socket (on demand)")
    srv.add_argument("--idle-exit", type=float, default=None, help="end after this many seconds without a session")
    srv.add_argument("argv", nargs=argparse.REMAINDER, help="-- rsync --server --daemon --config=FILE .")
    cli = sub.add_parser("connect", help="the rsync -e command: stdin/stdout over TLS to the peer")
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to connect and complete TLS")
    cli.add_argument("--tls-dir", type=Path, required=True)
    cli.add_argument("--node", required=True, help="this head's host name (its client certificate)")
    # rsync passes ``-l USER`` for ``USER@PEER::MODULE``; that user authenticates inside (rsyncd's auth users).
    cli.add_argument("-l", dest="login", default=None, help="ignored (rsync's own user name)")
    cli.add_argument("peer", help="the peer's address (rsync passes it)")
    cli.add_argument("ignored", nargs=argparse.REMAINDER, help="the remote command rsync asks for; not used")
    args = parser.parse_args(argv)
    if args.command == "connect":
        return _connect_cli(args.peer, args.port, args.tls_dir, args.node, args.connect_timeout)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("give the rsync command after --")
    address, _, port = args.listen.rpartition(":")
    on_demand = {"listen_fd": args.listen_fd, "idle_exit": args.idle_exit}
    asyncio.run(serve(address, int(port), args.tls_dir, args.node, allow=set(args.allow), argv=command, **on_demand))
    return 0


if __name__ == "__main__":
    sys.exit(main())
