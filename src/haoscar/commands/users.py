"""``haoscar user add|delete|list``: cluster-wide accounts as OSCAR made them (docs/accounts.md).

A user has the same uid and gid on both heads and every node: the ids are chosen here (``provision.accounts``'
range, checked against the cluster database and the head's own accounts), kept in the cluster database (which the
standby replicates) and pushed to every host by ``cluster sync``'s script. The home is made on the head's export
(/home), with an ssh key pair whose public key the home's authorized_keys holds: the home is the same on every
node (NFS), so the user logs in from node to node without a password.

Bad input (a bad name, a user that exists here or in the cluster, an id that is taken, a key file that holds no
public key) is a FieldError and nothing is changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haoscar.commands.cluster_sync import RUNNERS, SyncReport, sync_hosts
from haoscar.commands.env import Env
from haoscar.commands.exec import Copier, Shell, resolve_targets
from haoscar.db.models import User, UserGroup
from haoscar.db.session import record_event
from haoscar.errors import FieldError, FieldNotFound, FieldProblem, UserError
from haoscar.provision import fanout
from haoscar.provision.accounts import (
    DEFAULT_HOME_BASE,
    DEFAULT_SHELL,
    Account,
    Keygen,
    LocalAccounts,
    field_text_problem,
    id_problem,
    make_home,
    name_problem,
    next_id,
    parse_getent,
    remove_home,
    shell_problem,
)


@dataclass(frozen=True)
class UserAdd:
    name: str
    uid: int | None = None
    gid: int | None = None
    group: str | None = None  # None: a group of the user's own name
    shell: str = DEFAULT_SHELL
    comment: str = ""
    ssh_key: Path | None = None  # a file of public keys the user may log in with, besides the one made here
    home_base: Path | None = None  # None: the export (the spec's first export, else /home)
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class UserDelete:
    name: str
    keep_home: bool = False
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class UserRow:
    name: str
    uid: int
    gid: int
    group: str
    shell: str
    comment: str
    home: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UserReport:
    """What ``user add`` or ``user delete`` did: the user, what happened to the home, and the push to the hosts."""

    user: UserRow
    home: list[str]
    sync: SyncReport

    @property
    def exit_status(self) -> int:
        return self.sync.exit_status

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user.as_dict(), "home": self.home, "sync": self.sync.as_dict()}


# ------------------------------------------------------------------------------------------------------ checks


def _local_accounts(env: Env) -> LocalAccounts:
    """This head's accounts (NSS: files and whatever else it uses)."""
    texts = []
    for database in ("passwd", "group"):
        done = env.run(["getent", database], timeout=30)
        if done.returncode not in (0, 2):  # 2: no entries
            raise UserError(f"getent {database} failed: {done.stderr.decode(errors='replace').strip()}")
        texts.append(done.stdout.decode(errors="replace"))
    return LocalAccounts(parse_getent(texts[0]), parse_getent(texts[1]))


def _read_keys(env: Env, path: Path) -> tuple[list[str], str | None]:
    """The public keys of ``path`` (one a line), or why the file will not do."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"{str(path)!r} cannot be read: {getattr(exc, 'strerror', None) or exc}"
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        return [], f"{str(path)!r} holds no public key"
    for number, key in enumerate(keys, 1):
        if env.run(["ssh-keygen", "-l", "-f", "-"], input=key.encode(), timeout=30).returncode != 0:
            return [], f"{str(path)!r}: key {number} is not an ssh public key ({key[:40]}...)"
    return keys, None


def _input_problems(env: Env, request: UserAdd) -> tuple[list[FieldProblem], list[str]]:
    problems = []
    checks = [
        ("name", name_problem(request.name)),
        ("group", name_problem(request.group) if request.group is not None else None),
        ("uid", id_problem(request.uid) if request.uid is not None else None),
        ("gid", id_problem(request.gid) if request.gid is not None else None),
        ("shell", shell_problem(request.shell)),
        ("comment", field_text_problem(request.comment, "a comment")),
    ]
    problems = [FieldProblem(name, detail, sep=": ") for name, detail in checks if detail is not None]
    keys: list[str] = []
    if request.ssh_key is not None:
        keys, problem = _read_keys(env, request.ssh_key)
        if problem is not None:
            problems.append(FieldProblem("ssh_key", problem, sep=": "))
    if not request.connect_timeout > 0:
        problems.append(FieldProblem("connect_timeout", f"{request.connect_timeout:g}: give seconds above 0"))
    return problems, keys


def _raise(problems: list[FieldProblem]) -> None:
    if len(problems) == 1:
        raise FieldError(problems[0].field, problems[0].detail, sep=problems[0].sep)
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was changed")


@dataclass(frozen=True)
class _Plan:
    account: Account
    new_group: UserGroup | None  # None: the group is the cluster's already


def _pick_uid(session: Session, request: UserAdd, local: LocalAccounts) -> int:
    cluster = set(session.scalars(select(User.uid)))
    if request.uid is None:
        uid = next_id(cluster | set(local.users.values()))
        if uid is None:
            raise FieldError("uid", "no free uid is left in the cluster's range: give one", sep=": ")
        return uid
    owner = session.scalar(select(User.name).where(User.uid == request.uid)) or local.user_with_id(request.uid)
    if owner is not None:
        raise FieldError("uid", f"{request.uid} is taken by {owner!r}: give another or leave it out", sep=": ")
    return request.uid


def _pick_group(
    session: Session, request: UserAdd, local: LocalAccounts, uid: int
) -> tuple[str, int, UserGroup | None]:
    name = request.group or request.name
    known = session.get(UserGroup, name)
    have = known.gid if known is not None else local.groups.get(name)
    if have is not None:
        if request.gid is not None and request.gid != have:
            raise FieldError("gid", f"{request.gid}: group {name!r} has gid {have}", sep=": ")
        return name, have, None if known is not None else UserGroup(name=name, gid=have, external=True)
    if request.gid is not None:
        owner = session.scalar(select(UserGroup.name).where(UserGroup.gid == request.gid))
        owner = owner or local.group_with_id(request.gid)
        if owner is not None:
            raise FieldError(
                "gid", f"{request.gid} is taken by group {owner!r}: give another or leave it out", sep=": "
            )
        return name, request.gid, UserGroup(name=name, gid=request.gid)
    taken = set(session.scalars(select(UserGroup.gid))) | set(local.groups.values())
    gid = uid if uid not in taken else next_id(taken)
    if gid is None:
        raise FieldError("gid", "no free gid is left in the cluster's range: give one", sep=": ")
    return name, gid, UserGroup(name=name, gid=gid)


def home_base(request_base: Path | None) -> Path:
    """Where homes are made: /home, the NFS export every node mounts (``nfs.exports``' default)."""
    return request_base if request_base is not None else DEFAULT_HOME_BASE


def _plan(env: Env, request: UserAdd) -> _Plan:
    local = _local_accounts(env)
    with env.database.session(readonly=True) as session:
        if session.get(User, request.name) is not None:
            raise FieldError(
                "name", f"{request.name!r} is a user of the cluster already (`haoscar user list`)", sep=": "
            )
        if request.name in local.users:
            raise FieldError(
                "name", f"{request.name!r} is an account on this head already: pick another name", sep=": "
            )
        uid = _pick_uid(session, request, local)
        group, gid, new_group = _pick_group(session, request, local, uid)
        home = str(home_base(request.home_base) / request.name)
    return _Plan(Account(request.name, uid, gid, group, request.shell, request.comment, home), new_group)


def _keygen(env: Env) -> Keygen:
    def keygen(path: Path, comment: str) -> None:
        argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
        done = env.run(argv, timeout=60)
        if done.returncode != 0:
            raise UserError(f"ssh-keygen could not make {path}: {done.stderr.decode(errors='replace').strip()}")

    return keygen


# ------------------------------------------------------------------------------------------------------ commands


def _row(account: Account) -> UserRow:
    a = account
    return UserRow(a.name, a.uid, a.gid, a.group, a.shell, a.comment, a.home)


def _push(env: Env, connect_timeout: float, runners: tuple[Shell, Copier]) -> SyncReport:
    targets = resolve_targets(env, "@*")
    return sync_hosts(env, targets, fanout.Limits(connect_timeout=connect_timeout), runners)


def user_add(env: Env, request: UserAdd, runners: tuple[Shell, Copier] = RUNNERS) -> UserReport:
    """Check everything, make the home on the export, record the user, push the accounts to every host."""
    problems, keys = _input_problems(env, request)
    _raise(problems)
    plan = _plan(env, request)
    account = plan.account
    home_path = Path(account.home)
    home_was_there = home_path.exists()
    home = make_home(account, _keygen(env), keys)
    try:
        with env.database.session() as session:
            if plan.new_group is not None:
                session.add(plan.new_group)
                session.flush()  # the group's row before the user's, which refers to it
            a = account
            session.add(User(name=a.name, uid=a.uid, group=a.group, shell=a.shell, comment=a.comment, home=a.home))
            record_event(session, "user.added", f"user {a.name} added (uid {a.uid}, gid {a.gid})")
    except IntegrityError:
        # Another `user add` recorded the same name, uid or gid between our check and our insert: undo the home
        # this call made (nothing else was changed yet) and say what to do.
        if not home_was_there:
            remove_home(home_path, home_path.parent)
        raise FieldError(
            "uid",
            f"another `user add` took name {account.name!r}, uid {account.uid} or gid {account.gid} at the "
            "same time; nothing was changed, run it again",
            sep=": ",
        ) from None
    return UserReport(_row(account), home, _push(env, request.connect_timeout, runners))


def user_delete(env: Env, request: UserDelete, runners: tuple[Shell, Copier] = RUNNERS) -> UserReport:
    """Forget the user, delete it on every host, then remove its home (unless ``keep_home``)."""
    if not request.connect_timeout > 0:
        raise FieldError("connect_timeout", f"{request.connect_timeout:g}: give seconds above 0")
    with env.database.session() as session:
        user = session.get(User, request.name)
        if user is None:
            names = ", ".join(session.scalars(select(User.name).order_by(User.name))) or "none yet"
            raise FieldNotFound("name", f"{request.name!r} is no user of the cluster; the users are {names}", sep=": ")
        group = session.get(UserGroup, user.group)
        assert group is not None  # a foreign key
        account = Account(user.name, user.uid, group.gid, group.name, user.shell, user.comment, user.home)
        session.delete(user)
        session.flush()
        others = session.scalar(select(func.count()).select_from(User).where(User.group == group.name))
        if not others:
            session.delete(group)
        record_event(session, "user.deleted", f"user {account.name} deleted")
    sync = _push(env, request.connect_timeout, runners)
    home = Path(account.home)
    done = [f"kept {home}"]
    if not request.keep_home:
        done = [f"removed {home}"] if remove_home(home, home.parent) else [f"{home} was not there"]
    return UserReport(_row(account), done, sync)


@dataclass(frozen=True)
class ListUsers:
    pass


def user_list(env: Env, _request: ListUsers) -> list[UserRow]:
    with env.database.session(readonly=True) as session:
        groups = {g.name: g.gid for g in session.scalars(select(UserGroup))}
        users = session.scalars(select(User).order_by(User.uid))
        return [UserRow(u.name, u.uid, groups[u.group], u.group, u.shell, u.comment, u.home) for u in users]
