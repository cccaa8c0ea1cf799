"""rsync both ways: each head runs an rsync daemon restricted to its peer, and the active head's replication runs
rsync clients against the standby's daemon (push), or a returning head pulls from the active one (catch-up).

Why an rsync daemon rather than rsync over ssh: the channel is a dedicated link between the two heads, the shared
HA key already exists on both (the daemon's password is derived from it, so there is no second key to distribute
and rotate), authentication is rsync's challenge/response (the password never crosses the wire), and a connection
costs no ssh handshake, which keeps batches of a few files well under 100 ms. ``hosts allow`` admits only the
peer's address and the daemon listens only on the peer-network address. What it does not give is encryption of
the data on that link (see docs/replication.md).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.replication.config import RSYNC_USER, ReplConfig, Tree, rsync_password

# -a: perms, times, owner, group, symlinks, devices; -H hard links, -A ACLs, -X xattrs; -W whole files (a LAN is
# faster than the delta algorithm and it reads each file once).
FIDELITY = ("-aHAX", "--numeric-ids", "-W")
TIMEOUTS = ("--timeout=20", "--contimeout=3")


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
        if self.code in (10, 12, 30, 35) or "connection refused" in text or "no route" in text:
            return "unreachable"
        return "failed"

    def summary(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        # The line that names the problem, when there is one: after a full disk the receiver hangs up, so the last
        # line is often the sender's "connection reset", which says nothing.
        markers = {"disk_full": ("no space left", "disk quota"), "auth": ("auth failed", "password")}
        named = [line for line in lines if any(m in line.lower() for m in markers.get(self.problem, ()))]
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
    """``rsync --daemon`` on this head's peer-network address, restricted to the peer."""

    def __init__(self, cfg: ReplConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.writable = False

    async def start(self, key: bytes, writable: bool) -> None:
        await self.stop()
        write_secrets(self.cfg, key)
        conf = self.cfg.repl_dir / "rsyncd.conf"
        conf.write_text(daemon_config(self.cfg, writable))
        self.writable = writable
        self.proc = await asyncio.create_subprocess_exec(
            "rsync", "--daemon", "--no-detach", f"--config={conf}", f"--address={self.cfg.local_ip}",
            f"--port={self.cfg.rsync_port}",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )  # fmt: skip
        # The daemon reports a bind failure at once; give it that moment before declaring it up.
        try:
            await asyncio.wait_for(self.proc.wait(), 0.2)
        except TimeoutError:
            return
        err = (await self.proc.stderr.read()).decode(errors="replace") if self.proc.stderr else ""
        raise RuntimeError(f"rsync daemon on {self.cfg.local_ip}:{self.cfg.rsync_port} exited: {err.strip()}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _url(cfg: ReplConfig, tree: Tree) -> str:
    return f"rsync://{RSYNC_USER}@{cfg.peer_ip}:{cfg.rsync_port}/{tree.module}/"


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
        "rsync", *FIDELITY, *TIMEOUTS, "-r", "--relative", "--from0", "--files-from=-", "--delete-missing-args",
        "--delete", f"--password-file={password}", *_excludes(tree, writing), f"{tree.path}/", _url(cfg, tree),
    ]  # fmt: skip


def full_argv(cfg: ReplConfig, tree: Tree, writing: Sequence[str] = ()) -> list[str]:
    _, password = secrets_paths(cfg)
    return [
        "rsync", *FIDELITY, *TIMEOUTS, "--delete", f"--password-file={password}", *_excludes(tree, writing),
        f"{tree.path}/", _url(cfg, tree),
    ]  # fmt: skip


def pull_argv(cfg: ReplConfig, tree: Tree, backup_dir: Path) -> list[str]:
    """Make this head's tree equal to the peer's, moving whatever it replaces or deletes into ``backup_dir``."""
    _, password = secrets_paths(cfg)
    return [
        "rsync", *FIDELITY, *TIMEOUTS, "--delete", "--backup", f"--backup-dir={backup_dir}",
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
