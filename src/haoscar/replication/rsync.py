"""rsync both ways over mutual TLS: each head serves rsync's daemon protocol to its peer through
``haoscar.tlspipe`` (TLS with the cluster CA, the peer's certificate required), and the active head's replication
runs rsync clients whose remote shell is ``tlspipe connect`` against the standby (push), or a returning head pulls
from the active one (catch-up).

The rsync daemon itself no longer listens on the network: ``tlspipe serve`` listens on this head's peer-network
address, closes a connection from any other address (or over its cap) before the TLS handshake, and only after a
handshake with a certificate from the cluster CA runs ``rsync --server --daemon`` for that one connection. Inside,
rsyncd.conf still restricts every module to the peer (``hosts allow``) and to the ``auth users`` account whose
password (derived from the replication key) never crosses the wire: two independent locks. Why not rsync over ssh
or stunnel: see ``haoscar.tlspipe`` and docs/replication.md.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.replication.channel_tls import tls_files
from haoscar.replication.config import RSYNC_USER, ReplConfig, Tree, rsync_password
from haoscar.tlsca import NodeTls, listening_socket, server_context

# -a: perms, times, owner, group, symlinks, devices; -H hard links, -A ACLs, -X xattrs; -W whole files (a LAN is
# faster than the delta algorithm and it reads each file once). --modify-window=-1: the quick check compares mtimes
# to the nanosecond; by default it compares whole seconds, so a file rewritten with the same size within the second
# of its last copy (slurmctld's job_state, saved twice in a second) was skipped and the standby kept the old bytes.
FIDELITY = ("-aHAX", "--numeric-ids", "-W", "--modify-window=-1")
# connecting (3 s) is tlspipe's: see _rsh. Over a remote shell the receiving rsync would write its errors ("No space
# left on device") to its own stderr, which tlspipe cannot carry: --stderr=client sends them in the protocol stream.
TIMEOUTS = ("--timeout=20", "--stderr=client")


@dataclass(frozen=True)
class RsyncResult:
    code: int
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        # 24: files vanished while being sent (deleted on the source meanwhile): their deletion follows.
        return self.code in (0, 24)

    @property
    def problem(self) -> str:
        """One of: ok, auth, unreachable, disk_full, failed."""
        text = self.stderr.lower()
        if self.ok:
            return "ok"
        if "auth failed" in text or "password" in text:
            return "auth"
        if "no space left" in text or "disk quota" in text:
            return "disk_full"
        if self.code in (10, 12, 30, 35) or any(
            m in text for m in ("connection refused", "no route", "cannot connect")
        ):
            return "unreachable"
        return "failed"

    def summary(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        # The line that names the problem, when there is one: after a full disk the receiver hangs up, so the last
        # line is often the sender's "connection reset", which says nothing.
        markers = {"disk_full": ("no space left", "disk quota"), "auth": ("auth failed", "password")}
        named = [line for line in lines if any(m in line.lower() for m in markers.get(self.problem, ()))]
        named = named or [line for line in lines if line.startswith("tlspipe:")]  # the channel's own words
        informative = named or [line for line in lines if not line.startswith("rsync error:")] or lines
        return (informative[-1] if informative else f"rsync exit {self.code}")[:300]


def secrets_paths(cfg: ReplConfig) -> tuple[Path, Path]:
    return cfg.repl_dir / "rsyncd.secrets", cfg.repl_dir / "rsync.password"


def _write_private(path: Path, text: str) -> None:
    # rsync refuses a secrets file that others can read ("strict modes"): 0600 from the first byte.
    atomic_write(path, text, mode=0o600, durable=False, compare=False)


def write_secrets(cfg: ReplConfig, key: bytes) -> None:
    server, client = secrets_paths(cfg)
    password = rsync_password(key)
    _write_private(server, f"{RSYNC_USER}:{password}\n")
    _write_private(client, password + "\n")


def daemon_config(cfg: ReplConfig, writable: bool) -> str:
    secrets, _ = secrets_paths(cfg)
    lines = [
        "# written by haoscar replication; rewritten on every start",
        "uid = 0",
        "gid = 0",
        "use chroot = yes",
        "numeric ids = yes",
        "munge symlinks = no",
        "reverse lookup = no",
        "max connections = 16",
        f"lock file = {cfg.repl_dir / 'rsyncd.lock'}",
        f"log file = {cfg.repl_dir / 'rsyncd.log'}",
        "timeout = 120",
    ]
    for tree in cfg.trees:
        lines += [
            "",
            f"[{tree.module}]",
            f"    path = {tree.path}",
            f"    read only = {'no' if writable else 'yes'}",
            "    list = no",
            f"    hosts allow = {cfg.peer_ip}",
            "    hosts deny = *",
            f"    auth users = {RSYNC_USER}",
            f"    secrets file = {secrets}",
            "    strict modes = yes",
        ]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the daemon that started it dies, even by SIGKILL, so no orphaned
    rsync daemon keeps the port (and the peer's access) after a crash of the HA daemon alone."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class RsyncDaemon:
    """This head's rsync daemon for its peer, reached only through ``tlspipe serve`` on the peer-network address:
    mutual TLS with the cluster CA, the peer's address only; one ``rsync --server --daemon`` per connection.

    The standby's writable channel (every batch of the active head arrives on it) runs all the time. The active
    head's read-only one is used only when a returning peer pulls, so it runs on demand: this process binds the
    listening socket and watches it (no polling); a connection starts ``tlspipe serve`` on that socket, which ends
    after ``ON_DEMAND_IDLE_S`` without a session. An idle active head so carries no 24 MB server process
    (docs/benchmarks.md, idle cost); the first pull waits for the server's start (~0.2 s) in the backlog."""

    ON_DEMAND_IDLE_S = 30.0

    def __init__(self, cfg: ReplConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.writable = False
        self._listener: socket.socket | None = None
        self._on_demand: asyncio.Task[None] | None = None

    def argv(self, conf: Path, listen_fd: int | None = None) -> list[str]:
        cfg = self.cfg
        demand = [] if listen_fd is None else [f"--listen-fd={listen_fd}", f"--idle-exit={self.ON_DEMAND_IDLE_S:g}"]
        return [
            sys.executable, "-m", "haoscar.tlspipe", "serve", f"--listen={cfg.local_ip}:{cfg.rsync_port}",
            f"--allow={cfg.peer_ip}", "--tls-dir", str(cfg.tls), "--node", cfg.node, *demand,
            "--", "rsync", "--server", "--daemon", f"--config={conf}", ".",
        ]  # fmt: skip

    async def start(self, key: bytes, writable: bool) -> None:
        await self.stop()
        files = tls_files(self.cfg)  # a missing certificate is a clear error here, not a silent child exit
        write_secrets(self.cfg, key)
        conf = self.cfg.repl_dir / "rsyncd.conf"
        conf.write_text(daemon_config(self.cfg, writable))
        self.writable = writable
        if not writable:
            self._listen_on_demand(files, conf)
            return
        log = self.cfg.repl_dir / "rsync-tls.log"
        with open(log, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(conf), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        # The server says when it is bound (a taken port, a missing certificate end it at once).
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 15.0)
        except TimeoutError:
            line = b""
        if line.startswith(b"listening on"):
            return
        await self.stop()
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise RuntimeError(
            f"the replication file channel on {self.cfg.local_ip}:{self.cfg.rsync_port} did not start: "
            f"{tail[0] if tail else 'no output'}"
        )

    def _listen_on_demand(self, files: NodeTls, conf: Path) -> None:
        where = f"{self.cfg.local_ip}:{self.cfg.rsync_port}"
        try:
            server_context(files, require_client_cert=True)  # a bad certificate or key: said now, not at a pull
            sock = listening_socket(str(self.cfg.local_ip), self.cfg.rsync_port)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise RuntimeError(f"the replication file channel on {where} did not start: {exc}") from None
        self._listener = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._spawn, sock, conf)

    def _spawn(self, sock: socket.socket, conf: Path) -> None:
        """A connection waits: hand the socket to a server process until it ends, then watch it again."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        self._on_demand = loop.create_task(self._serve_on_demand(sock, conf), name="haoscar-rsync-on-demand")

    async def _serve_on_demand(self, sock: socket.socket, conf: Path) -> None:
        code = 1
        try:
            with open(self.cfg.repl_dir / "rsync-tls.log", "ab") as err:
                self.proc = proc = await asyncio.create_subprocess_exec(
                    *self.argv(conf, sock.fileno()), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=err, pass_fds=(sock.fileno(),), preexec_fn=_die_with_parent,
                )  # fmt: skip
            code = await proc.wait()
        except OSError:
            pass  # could not be started (no process, no descriptor): tried again at the next connection
        if code != 0:
            await asyncio.sleep(1.0)  # a server that cannot start: not restarted in a loop (its log says why)
        if self._listener is sock:  # not stopped meanwhile
            asyncio.get_running_loop().add_reader(sock.fileno(), self._spawn, sock, conf)

    async def stop(self) -> None:
        sock, self._listener = self._listener, None
        task, self._on_demand = self._on_demand, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _rsh(cfg: ReplConfig) -> str:
    """rsync's remote shell: ``tlspipe connect`` joins rsync to the peer's daemon over mutual TLS."""
    argv = [sys.executable, "-m", "haoscar.tlspipe", "connect", "--port", str(cfg.rsync_port)]
    argv += ["--connect-timeout", "3", "--tls-dir", str(cfg.tls), "--node", cfg.node]
    return " ".join(shlex.quote(a) for a in argv)


def _url(cfg: ReplConfig, tree: Tree) -> str:
    return f"{RSYNC_USER}@{cfg.peer_ip}::{tree.module}/"


def literal_pattern(rel: str) -> str:
    """An rsync filter pattern matching exactly the path ``rel``: a name holding ``*``, ``?`` or ``[`` would
    otherwise be a wildcard and exclude other files too (rsync matches a pattern without those characters
    literally, and one with them through wildmatch, where a backslash makes the next character literal)."""
    if not any(c in rel for c in "*?["):
        return rel
    return "".join("\\" + c if c in "*?[\\" else c for c in rel)


def _excludes(tree: Tree, writing: Sequence[str] = ()) -> list[str]:
    # Files still being written go first (first match wins): anchored at the tree, so only that very path.
    # (--files-from names are never patterns: only these excludes need escaping.)
    return [f"--exclude=/{literal_pattern(rel)}" for rel in writing] + [
        f"--exclude={pattern}" for pattern in tree.excludes
    ]


def batch_argv(cfg: ReplConfig, tree: Tree, writing: Sequence[str] = ()) -> list[str]:
    _, password = secrets_paths(cfg)
    return [
        "rsync", "-e", _rsh(cfg), *FIDELITY, *TIMEOUTS, "-r", "--relative", "--from0", "--files-from=-",
        "--delete-missing-args", "--delete", f"--password-file={password}", *_excludes(tree, writing),
        f"{tree.path}/", _url(cfg, tree),
    ]  # fmt: skip


def full_argv(cfg: ReplConfig, tree: Tree, writing: Sequence[str] = ()) -> list[str]:
    _, password = secrets_paths(cfg)
    return [
        "rsync", "-e", _rsh(cfg), *FIDELITY, *TIMEOUTS, "--delete", f"--password-file={password}",
        *_excludes(tree, writing), f"{tree.path}/", _url(cfg, tree),
    ]  # fmt: skip


def pull_argv(cfg: ReplConfig, tree: Tree, backup_dir: Path) -> list[str]:
    """Make this head's tree equal to the peer's, moving whatever it replaces or deletes into ``backup_dir``."""
    _, password = secrets_paths(cfg)
    return [
        "rsync", "-e", _rsh(cfg), *FIDELITY, *TIMEOUTS, "--delete", "--backup", f"--backup-dir={backup_dir}",
        f"--password-file={password}", *_excludes(tree), _url(cfg, tree), f"{tree.path}/",
    ]  # fmt: skip


async def run_rsync(argv: Sequence[str], stdin: bytes | None = None) -> RsyncResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate(stdin)
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return RsyncResult(proc.returncode or 0, err.decode(errors="replace"), loop.time() - start)
