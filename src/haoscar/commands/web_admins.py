"""``haoscar web admin add|list|delete|passwd``: the web console's administrators (docs/web.md).

An administrator is a name and a password kept only as an scrypt hash with its own random salt. The hash text
carries its parameters (``scrypt$n=16384,r=8,p=1$SALT$HASH``), so a later release can raise them: an old hash
still verifies with the parameters written in it, and is re-hashed with the new ones at the next login. Hashes are
compared in constant time; an unknown name costs the same scrypt as a known one (no timing tells names apart).

The accounts live in the cluster database, which the standby replicates: they follow a failover. Bad input (an
empty or malformed name, a weak password, an administrator that exists or does not) is a FieldError and nothing is
changed. Deleting an administrator or changing a password ends that administrator's sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select

from haoscar.commands.env import Env
from haoscar.db.models import WebAdmin, WebSession
from haoscar.errors import FieldError, FieldNotFound

# scrypt's cost: 16 MiB of memory and ~50 ms per hash on a head; recorded in every hash (see the docstring).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD = 12
_MAXMEM = 64 * 1024 * 1024
_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# A few passwords every guesser tries first; the length rule already refuses most of the rest.
_COMMON = frozenset({"password1234", "123456789012", "qwertyuiopas", "adminadmin12", "administrator", "changemeplease"})


@dataclass(frozen=True)
class AdminAdd:
    name: str
    password: str


@dataclass(frozen=True)
class AdminPasswd:
    name: str
    password: str


@dataclass(frozen=True)
class AdminDelete:
    name: str


@dataclass(frozen=True)
class AdminRow:
    name: str
    created_s: float
    changed_s: float
    sessions: int
    scheme: str  # the hash's parameters, e.g. "scrypt n=16384,r=8,p=1" (never the hash)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ hashing


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The text kept in the database: scheme, parameters, salt and hash (base64, no padding)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=HASH_BYTES)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _parse(stored: str) -> tuple[dict[str, int], bytes, bytes] | None:
    try:
        scheme, params, salt, digest = stored.split("$")
        values = {k: int(v) for k, v in (item.split("=") for item in params.split(","))}
        if scheme != "scrypt" or set(values) != {"n", "r", "p"}:
            return None
        return values, _unb64(salt), _unb64(digest)
    except ValueError:
        return None


# A hash nobody's password matches, verified for unknown names so that they take as long as known ones.
_DUMMY = hash_password(secrets.token_hex(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (None: an unknown name, always False after the same work)."""
    parsed = _parse(stored if stored is not None else _DUMMY)
    if parsed is None:
        return False
    params, salt, digest = parsed
    candidate = hashlib.scrypt(password.encode(), salt=salt, maxmem=_MAXMEM, dklen=len(digest), **params)
    return hmac.compare_digest(candidate, digest) and stored is not None


def needs_rehash(stored: str) -> bool:
    """The hash was made with other parameters than today's (raised since): re-hash at the next login."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] != {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}


def _scheme(stored: str) -> str:
    parsed = _parse(stored)
    if parsed is None:
        return "unknown"
    return "scrypt " + ",".join(f"{k}={v}" for k, v in parsed[0].items())


# ------------------------------------------------------------------------------------------------ the rules


def name_problem(name: str) -> str | None:
    if not name:
        return "is empty; give the administrator a name"
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not a valid name: 1-32 characters, lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )
    return None


def password_problem(password: str, name: str) -> str | None:
    if not password:
        return "is empty; choose a password of at least 12 characters"
    if len(password) < MIN_PASSWORD:
        return f"is too short ({len(password)} characters); choose at least {MIN_PASSWORD}"
    if len(password) > 1024:
        return "is longer than 1024 characters"
    if len(set(password)) < 4 or password.lower() in _COMMON or (name and name.lower() in password.lower()):
        return "is too easy to guess (a common password, too few different characters, or the name in it)"
    return None


def _check(name: str, password: str | None) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise FieldError("name", problem)
    if password is not None:
        problem = password_problem(password, name)
        if problem is not None:
            raise FieldError("password", problem)


def admin_add(env: Env, request: AdminAdd) -> AdminRow:
    """A new administrator; the name must be free."""
    _check(request.name, request.password)
    stored = hash_password(request.password)
    now = env.clock.wall()
    with env.database.session() as session:
        if session.get(WebAdmin, request.name) is not None:
            raise FieldError("name", f"an administrator {request.name!r} exists already; pick another name")
        session.add(WebAdmin(name=request.name, password_hash=stored, created_s=now, changed_s=now))
    return AdminRow(request.name, now, now, 0, _scheme(stored))


def admin_passwd(env: Env, request: AdminPasswd) -> AdminRow:
    """A new password for an administrator; the administrator's sessions end (logged out everywhere)."""
    _check(request.name, request.password)
    stored = hash_password(request.password)
    with env.database.session() as session:
        admin = _existing(session.get(WebAdmin, request.name), request.name)
        admin.password_hash, admin.changed_s = stored, env.clock.wall()
        session.execute(delete(WebSession).where(WebSession.admin == request.name))
        return AdminRow(admin.name, admin.created_s, admin.changed_s, 0, _scheme(stored))


def admin_delete(env: Env, request: AdminDelete) -> str:
    """Delete an administrator and end its sessions; the audit log keeps its entries."""
    _check(request.name, None)
    with env.database.session() as session:
        admin = _existing(session.get(WebAdmin, request.name), request.name)
        session.execute(delete(WebSession).where(WebSession.admin == request.name))
        session.delete(admin)
    return request.name


def admin_list(env: Env) -> list[AdminRow]:
    with env.database.session(readonly=True) as session:
        admins = session.scalars(select(WebAdmin).order_by(WebAdmin.name)).all()
        counts: dict[str, int] = {}
        for owner in session.scalars(select(WebSession.admin)).all():
            counts[owner] = counts.get(owner, 0) + 1
        return [
            AdminRow(a.name, a.created_s, a.changed_s, counts.get(a.name, 0), _scheme(a.password_hash)) for a in admins
        ]


def _existing(admin: WebAdmin | None, name: str) -> WebAdmin:
    if admin is None:
        raise FieldNotFound("name", f"there is no administrator {name!r}; `haoscar web admin list` shows them")
    return admin
