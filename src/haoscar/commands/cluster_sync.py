"""``haoscar cluster sync`` (OSCAR's ``sync_files``): the cluster's state pushed to both heads and every node, by
one idempotent script (``provision.accounts_script``): haoscar's users and groups, /etc/hosts from the database,
/etc/ssh/ssh_known_hosts from the host keys haoscar's ssh learnt, and root's authorized_keys with the cluster key.

The script is copied to each host and run there through the parallel shell (``provision.fanout``, ClusterShell);
on the head this command runs on, it runs locally. A host that cannot be reached is reported and the others get
the state; it gets it at the next sync. ``resync_after_node_change`` is the sync the node commands run after they
changed the nodes (docs/accounts.md).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.commands.env import Env
from haoscar.commands.exec import Copier, Shell, resolve_targets, ssh_failure
from haoscar.db.folding import fold
from haoscar.db.models import Node, User, UserGroup
from haoscar.errors import FieldError
from haoscar.fsutil import atomic_write
from haoscar.provision import fanout
from haoscar.provision.accounts import Account
from haoscar.provision.accounts_hosts import HEAD_ROLES, host_entries
from haoscar.provision.accounts_script import (
    Group,
    SyncContent,
    hosts_block,
    known_hosts_block,
    render_script,
    root_keys_block,
)
from haoscar.provision.node_groups import private_addresses
from haoscar.provision.sshkeys import ensure_identity

LIVE_STATES = ("installed", "up")  # nodes the sync after a node change goes to (with the heads)
AUTO_CONNECT_TIMEOUT = 3.0
REMOTE_DIR = "/run"


@dataclass(frozen=True)
class SyncRequest:
    """``nodes``: a node set or @group (None: both heads and every node of the database)."""

    nodes: str | None = None
    connect_timeout: float = 10.0
    fanout: int = 64


@dataclass(frozen=True)
class HostSync:
    """One host's outcome: what the script changed there, or why it failed."""

    host: str
    ok: bool
    changes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class SyncReport:
    hosts: list[HostSync]
    seconds: float

    @property
    def failed(self) -> list[str]:
        return [h.host for h in self.hosts if not h.ok]

    @property
    def exit_status(self) -> int:
        """0 when every host has the state, 1 when any could not be reached or failed."""
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "failed": fold(self.failed),
            "seconds": self.seconds,
            "hosts": {h.host: {"ok": h.ok, "changes": h.changes, "error": h.error} for h in self.hosts},
        }


def accounts_of(session: Session) -> tuple[list[Account], list[Group]]:
    groups = {g.name: g for g in session.scalars(select(UserGroup))}
    accounts = [
        Account(u.name, u.uid, groups[u.group].gid, u.group, u.shell, u.comment, u.home)
        for u in session.scalars(select(User).order_by(User.uid))
    ]
    return accounts, [Group(g.name, g.gid, g.external) for g in sorted(groups.values(), key=lambda g: g.gid)]


def sync_content(env: Env, own_keys: str = "") -> SyncContent:
    """What every host gets, from the database and the state directory (``own_keys``: this head's host keys, in
    known_hosts lines, which haoscar's ssh never learns since it does not log in to the head it runs on)."""
    identity = ensure_identity(env.state_dir)
    known = identity.known_hosts.read_text() if identity.known_hosts.exists() else ""
    known += own_keys
    with env.database.session(readonly=True) as session:
        entries = host_entries(session)
        accounts, groups = accounts_of(session)
    return SyncContent(
        hosts=hosts_block(entries),
        known_hosts=known_hosts_block(known, entries),
        root_keys=root_keys_block([identity.public_key]),
        accounts=accounts,
        groups=groups,
    )


def _this_head(env: Env, targets: dict[str, str]) -> str | None:
    """The head this command runs on, when it is a target: it runs the script itself, no ssh to itself."""
    me = socket.gethostname().split(".")[0]
    if me not in targets:
        return None
    with env.database.session(readonly=True) as session:
        role = session.scalar(select(Node.role).where(Node.name == me))
    return me if role in HEAD_ROLES else None


def _own_host_keys(env: Env, me: str) -> str:
    """What this head's sshd presents on its private address (``ssh-keyscan``: the keys of the running sshd)."""
    with env.database.session(readonly=True) as session:
        address = private_addresses(session).get(me)
    if address is None:
        return ""
    done = env.run(["ssh-keyscan", "-T", "3", address], timeout=30)
    return done.stdout.decode(errors="replace") if done.returncode == 0 else ""


def _outcome(host: str, outcome: fanout.Outcome) -> HostSync:
    if outcome.rc is None:
        return HostSync(host, False, error="unreachable: no exit status came back")
    failure = ssh_failure(outcome.rc, outcome.stderr)
    if failure is not None:
        return HostSync(host, False, error=f"unreachable: {failure}")
    said = [line for line in outcome.stderr if line.strip()]
    if outcome.timed_out or outcome.rc != 0:
        return HostSync(host, False, outcome.stdout, "; ".join(said) or f"the sync script exited {outcome.rc}")
    return HostSync(host, True, outcome.stdout)


def _run_local(env: Env, host: str, script: Path) -> HostSync:
    done = env.run(["bash", str(script)], timeout=300)
    outcome = fanout.Outcome(done.stdout.decode().splitlines(), done.stderr.decode().splitlines(), done.returncode)
    return _outcome(host, outcome)


def _push(
    env: Env, hosts: list[str], script: Path, limits: fanout.Limits, runners: tuple[Shell, Copier]
) -> list[HostSync]:
    """Copy the script to each host's /run, run it there, remove it: the hosts the copy missed are reported."""
    shell, copier = runners
    with env.database.session(readonly=True) as session:
        config = fanout.write_ssh_config(ensure_identity(env.state_dir), private_addresses(session))
    copied = copier(hosts, script, f"{REMOTE_DIR}/", limits, config)
    results = {h: _outcome(h, copied[h]) for h in hosts}
    reached = [h for h in hosts if results[h].ok]
    if reached:
        remote = f"{REMOTE_DIR}/{script.name}"
        command = f"bash {remote}; rc=$?; rm -f {remote}; exit $rc"
        ran = shell(reached, command, limits, config)
        results |= {h: _outcome(h, ran[h]) for h in reached}
    return [results[h] for h in hosts]


def _write_script(env: Env, content: SyncContent) -> Path:
    work = env.state_dir / "sync"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("haoscar-sync-*.sh"):
        old.unlink()
    path = work / f"haoscar-sync-{secrets.token_hex(4)}.sh"
    atomic_write(path, render_script(content), mode=0o700, durable=False)
    return path


def sync_hosts(env: Env, targets: dict[str, str], limits: fanout.Limits, runners: tuple[Shell, Copier]) -> SyncReport:
    """The state on ``targets`` (name -> private IP). Host keys haoscar's ssh learns on the way (a node reached for
    the first time) are pushed in a second round, so every host knows every other's key."""
    started = env.clock.monotonic()
    known = ensure_identity(env.state_dir).known_hosts
    before = known.read_text() if known.exists() else ""
    results = _round(env, list(targets), limits, runners)
    after = known.read_text() if known.exists() else ""
    if after != before:
        again = {r.host: r for r in _round(env, [r.host for r in results if r.ok], limits, runners)}
        results = [
            HostSync(r.host, again[r.host].ok, r.changes + again[r.host].changes, again[r.host].error)
            if r.host in again
            else r
            for r in results
        ]
    return SyncReport(results, round(env.clock.monotonic() - started, 3))


def _round(env: Env, hosts: list[str], limits: fanout.Limits, runners: tuple[Shell, Copier]) -> list[HostSync]:
    if not hosts:
        return []
    me = _this_head(env, dict.fromkeys(hosts, ""))
    script = _write_script(env, sync_content(env, _own_host_keys(env, me) if me is not None else ""))
    results = {me: _run_local(env, me, script)} if me is not None else {}
    others = [h for h in hosts if h != me]
    if others:
        results |= {r.host: r for r in _push(env, others, script, limits, runners)}
    return [results[h] for h in hosts]


RUNNERS: tuple[Shell, Copier] = (fanout.run_shell, fanout.run_copy)


def cluster_sync(env: Env, request: SyncRequest, runners: tuple[Shell, Copier] = RUNNERS) -> SyncReport:
    """Push the cluster's state (accounts, /etc/hosts, known hosts, root's key) to ``request.nodes``."""
    if not request.connect_timeout > 0:
        raise FieldError("connect_timeout", f"{request.connect_timeout:g}: give seconds above 0")
    if not 1 <= request.fanout <= 4096:
        raise FieldError("fanout", f"{request.fanout}: give 1 to 4096 connections at once")
    targets = resolve_targets(env, request.nodes or "@*")
    limits = fanout.Limits(request.fanout, request.connect_timeout)
    return sync_hosts(env, targets, limits, runners)


def resync_after_node_change(env: Env, runners: tuple[Shell, Copier] = RUNNERS) -> SyncReport | None:
    """After ``node add|set|delete`` or ``spec apply`` changed nodes: the sync to both heads and every installed
    node, with a short connect timeout. None (nothing run) while no compute node is installed yet: a cluster being
    defined has no host to keep current. Never raises for a host: its failure is in the report."""
    with env.database.session(readonly=True) as session:
        rows = session.execute(select(Node.name, Node.role, Node.install_state)).all()
        addresses = private_addresses(session)
    live = [name for name, role, state in rows if role not in HEAD_ROLES and state in LIVE_STATES]
    if not live:
        return None
    names = [name for name, role, _ in rows if role in HEAD_ROLES] + live
    targets = {name: addresses[name] for name in names if name in addresses}
    return sync_hosts(env, targets, fanout.Limits(connect_timeout=AUTO_CONNECT_TIMEOUT), runners)
