"""The cluster database (the role OSCAR's ODA played): SQLAlchemy 2 models.

The schema is managed by Alembic (``haoscar db upgrade``); a change here needs a migration in
``db/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("primary", "standby", "compute")
BOOT_MODES = ("netboot", "localboot")
# A node's life in provisioning, as `haoscar node list` shows it.
INSTALL_STATES = ("defined", "mac-assigned", "netboot", "installing", "installed", "failed", "up")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012 - SQLAlchemy reads this class attribute


class Network(Base):
    """A cluster network from the spec: private, public or heartbeat."""

    __tablename__ = "networks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    subnet: Mapped[str] = mapped_column(String(32))
    gateway: Mapped[str | None] = mapped_column(String(15))


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    source: Mapped[str] = mapped_column(String(255), default="")
    ip_assignment: Mapped[str] = mapped_column(String(8), default="static")
    post_install: Mapped[str] = mapped_column(String(8), default="reboot")
    from_spec: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    nodes: Mapped[list[Node]] = relationship(back_populates="image")


class Group(Base):
    """A set of clients defined together (OSCAR's Define Clients), or the heads."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    domain: Mapped[str | None] = mapped_column(String(253))
    base_name: Mapped[str | None] = mapped_column(String(63))
    start_number: Mapped[int | None] = mapped_column(Integer)
    padding: Mapped[int | None] = mapped_column(Integer)
    nodeset: Mapped[str | None] = mapped_column(Text)
    netmask: Mapped[str | None] = mapped_column(String(15))
    gateway: Mapped[str | None] = mapped_column(String(15))
    interface: Mapped[str | None] = mapped_column(String(15))
    from_spec: Mapped[bool] = mapped_column(default=False)
    # Define Clients' "start IP" of the group's first definition (added by the client-definitions work).
    start_ip: Mapped[str | None] = mapped_column(String(15))

    nodes: Mapped[list[Node]] = relationship(back_populates="group")


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    role: Mapped[str] = mapped_column(String(8), default="compute")
    domain: Mapped[str] = mapped_column(String(253))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    # The version of its image the node runs (installed or `node sync`ed); None: not known (docs/node-sync.md).
    image_version: Mapped[int | None] = mapped_column(Integer, default=None)
    boot_mode: Mapped[str] = mapped_column(String(9), default="netboot")
    install_state: Mapped[str] = mapped_column(String(12), default="defined")
    install_detail: Mapped[str] = mapped_column(Text, default="")
    from_spec: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    group: Mapped[Group | None] = relationship(back_populates="nodes")
    image: Mapped[Image | None] = relationship(back_populates="nodes")
    interfaces: Mapped[list[Interface]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Interface.name"
    )

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.domain}"


class Interface(Base):
    __tablename__ = "interfaces"
    __table_args__ = (UniqueConstraint("node_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(15))
    network: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str] = mapped_column(String(15), unique=True)
    prefix: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str | None] = mapped_column(String(17), unique=True)

    node: Mapped[Node] = relationship(back_populates="interfaces")


class MacSighting(Base):
    """A MAC seen asking for DHCP that no node owns yet (OSCAR's Collect MAC Address), in order of arrival."""

    __tablename__ = "mac_sightings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    interface: Mapped[str] = mapped_column(String(15), default="")
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    seen_count: Mapped[int] = mapped_column(Integer, default=1)
    message_type: Mapped[str] = mapped_column(String(16), default="")
    client_arch: Mapped[str] = mapped_column(String(16), default="")


class Event(Base):
    """Something that happened: a spec applied, a node defined, a MAC assigned, a failover."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    node: Mapped[str | None] = mapped_column(String(63))
    severity: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Setting(Base):
    """Cluster-wide values from the spec (name, domain) and tool state."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class InstallToken(Base):
    """A node's install credential: only its SHA-256 is kept, with its expiry (docs/install.md, credentials).

    One row per node: minting a new token (the node fetched its iPXE script again) replaces the old one; the
    installer's ``done`` or ``failed`` report deletes it."""

    __tablename__ = "install_tokens"

    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserGroup(Base):
    """A cluster-wide group (docs/accounts.md): a user's own group, or a group named with ``user add --group``.

    ``external``: the group existed on the head before haoscar used it (``users``, gid 100): haoscar puts users in
    it but never creates, changes or deletes it on the hosts."""

    __tablename__ = "user_groups"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    gid: Mapped[int] = mapped_column(Integer, unique=True)
    external: Mapped[bool] = mapped_column(default=False)


class User(Base):
    """A cluster-wide account (``haoscar user add``): the same uid and gid on both heads and every node; its home
    is on the head's export (docs/accounts.md)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    uid: Mapped[int] = mapped_column(Integer, unique=True)
    group: Mapped[str] = mapped_column(ForeignKey("user_groups.name"))
    shell: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str] = mapped_column(String(255), default="")
    home: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebAdmin(Base):
    """An administrator of the web console (docs/web.md): the password only as an scrypt hash, its parameters in
    the hash text (``scrypt$n=..,r=..,p=..$SALT$HASH``) so they can be raised later. In the cluster database, so
    the accounts follow a failover."""

    __tablename__ = "web_admins"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_s: Mapped[float] = mapped_column(Float)
    changed_s: Mapped[float] = mapped_column(Float)


class WebSession(Base):
    """A logged-in browser: only the SHA-256 of its cookie's token is kept, with the CSRF token of its forms."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin: Mapped[str] = mapped_column(ForeignKey("web_admins.name", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64), default="")
    created_s: Mapped[float] = mapped_column(Float)
    last_seen_s: Mapped[float] = mapped_column(Float)


class WebAudit(Base):
    """One entry of the console's audit log: who (``admin``, as typed for a failed login) did what from where."""

    __tablename__ = "web_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float, index=True)
    admin: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
