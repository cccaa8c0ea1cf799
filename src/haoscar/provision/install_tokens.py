"""Per-node install credentials (Warewulf's asset tokens, xCAT's per-node credentials).

When a node in boot mode ``netboot`` fetches its iPXE script from the address the cluster gave it, the boot
server mints a random token for that node and puts it on the installer's kernel command line
(``haoscar.token=...``). The installer sends it (``X-Haoscar-Token``) with every request: its plan, its node
record, its image, its reports. Only the token's SHA-256 and its expiry are stored (``install_tokens``); the
token itself exists only in the node's memory and in that one HTTP answer. A token is valid for one node until it
expires (``install.token_ttl``, default one hour) or the installer reports ``done`` or ``failed``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from haoscar.db.models import InstallToken, Node, Setting
from haoscar.errors import FieldError, UserError
from haoscar.provision.netboot_snapshot import Database

HEADER = "X-Haoscar-Token"
SETTING_TTL = "install.token_ttl"
DEFAULT_TTL = 3600.0


class Forbidden(UserError):
    """The request does not carry a valid install token for the node it names: 403, no data."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def token_ttl(db: Database) -> float:
    with db.session() as session:
        value = session.scalar(select(Setting.value).where(Setting.key == SETTING_TTL))
    return float(value) if value is not None else DEFAULT_TTL


def check_token_ttl(seconds: float) -> float:
    if not 60 <= seconds <= 7 * 86400:
        detail = f"{seconds:g} s is out of range; use 60-604800 s (default 3600)"
        raise FieldError("token_ttl", detail, sep=": ", bare=True)
    return seconds


def set_token_ttl(db: Database, seconds: float) -> float:
    check_token_ttl(seconds)
    with db.session() as session:
        row = session.get(Setting, SETTING_TTL)
        if row is None:
            session.add(Setting(key=SETTING_TTL, value=seconds))
        else:
            row.value = seconds
    return seconds


def mint(db: Database, node: str, ttl: float | None = None, *, now: datetime | None = None) -> str:
    """A fresh token for ``node`` (replacing any earlier one); only its hash is stored."""
    seconds = token_ttl(db) if ttl is None else ttl
    token = secrets.token_urlsafe(32)
    expires = (now or _now()) + timedelta(seconds=seconds)
    with db.session() as session:
        node_id = session.scalar(select(Node.id).where(Node.name == node))
        if node_id is None:
            raise UserError(f"no node named {node!r}")
        session.execute(delete(InstallToken).where(InstallToken.node_id == node_id))
        session.add(InstallToken(node_id=node_id, token_hash=_hash(token), expires_at=expires))
    return token


def check(db: Database, node: str, token: str | None, *, now: datetime | None = None) -> None:
    """Raise ``Forbidden`` unless ``token`` is ``node``'s current, unexpired install token."""
    if not token:
        raise Forbidden(f"an install token for {node} is required ({HEADER})")
    with db.session() as session:
        row = session.execute(
            select(InstallToken.expires_at, Node.name)
            .join(Node, Node.id == InstallToken.node_id)
            .where(InstallToken.token_hash == _hash(token))
        ).first()
    if row is None or row[1] != node:
        raise Forbidden(f"the install token is not {node}'s")
    expires = row[0] if row[0].tzinfo is not None else row[0].replace(tzinfo=UTC)  # SQLite drops the zone
    if expires <= (now or _now()):
        raise Forbidden(f"the install token of {node} has expired; network-boot {node} again")


def revoke(db: Database, node: str) -> None:
    with db.session() as session:
        node_id = session.scalar(select(Node.id).where(Node.name == node))
        if node_id is not None:
            session.execute(delete(InstallToken).where(InstallToken.node_id == node_id))
