"""The boot server's limits (docs/netboot.md, "Limits"): how many connections, how long a connection may stay
without a request, how big a request may be, how long a shutdown may wait.

Every compute node can reach the boot server, and before a node has its install token anyone on the compute
network can open connections to it: these limits keep a node that floods it (idle connections, request heads
sent one byte at a time, huge headers or reports) from exhausting it while real nodes boot.

Values come from the database settings ``bootserver.NAME`` (stored with ``netboot serve --limit NAME=VALUE
--save-limits``), then from ``--limit`` for one run, else the defaults below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sqlalchemy import select

from haoscar.db.models import Setting
from haoscar.errors import FieldError, UserError
from haoscar.provision.netboot_snapshot import Database

SETTING_PREFIX = "bootserver."


@dataclass(frozen=True)
class BootLimits:
    max_connections: int = 512
    """Open connections in all. Beyond it, the connection idle longest without a request is closed for the new
    one; when every connection is busy with a request, the new one is closed at once."""
    per_client: int = 16
    """Open connections from one address; more are closed at once (an iPXE client uses one or two)."""
    idle_timeout: float = 10.0
    """Seconds a connection may stay without a complete request head: from its opening (an idle or slowloris
    client) and between two requests (HTTP keep-alive)."""
    header_bytes: int = 8190
    """Longest request line and header field."""
    body_bytes: int = 64 * 1024
    """Largest request body (the installer's reports are a few hundred bytes)."""
    body_timeout: float = 10.0
    """Seconds to receive a report's body once its head has arrived."""
    send_timeout: float = 60.0
    """Seconds one MiB of an image stream may wait for the node to take it; after that the stream is cut."""
    shutdown_timeout: float = 3.0
    """Seconds requests under way get when the server stops (an image stream is cut; the node reports it)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Sane bounds: a limit outside them is a typo or would disable the protection.
RANGES: dict[str, tuple[float, float]] = {
    "max_connections": (8, 100_000),
    "per_client": (2, 10_000),
    "idle_timeout": (1, 3600),
    "header_bytes": (1024, 1 << 20),
    "body_bytes": (1024, 64 << 20),
    "body_timeout": (1, 3600),
    "send_timeout": (5, 3600),
    "shutdown_timeout": (0, 600),
}
_TYPES = {f.name: f.type for f in fields(BootLimits)}


def _bad(name: str, detail: str) -> FieldError:
    # Field ``limits`` of the serve request: ``limits NAME: ...`` (the CLI says ``--limit NAME: ...``).
    return FieldError("limits", f"{name}: {detail}", bare=True)


def check_limits(values: Mapping[str, object]) -> dict[str, Any]:
    """The values as numbers of the right type; a FieldError (field ``limits``, message ``limits NAME: ...``) for
    an unknown name or a value out of range."""
    checked: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in RANGES:
            raise _bad(name, f"unknown limit; known: {', '.join(RANGES)}")
        low, high = RANGES[name]
        try:
            number: int | float = int(str(raw)) if _TYPES[name] == "int" else float(str(raw))
        except ValueError:
            kind = "a whole number" if _TYPES[name] == "int" else "a number of seconds"
            raise _bad(name, f"{raw!r} is not {kind}") from None
        if not low <= number <= high:
            raise _bad(name, f"{number:g} is out of range; use {low:g}-{high:g}")
        checked[name] = number
    return checked


def load_limits(db: Database) -> BootLimits:
    """The limits stored in the database over the defaults."""
    with db.session() as session:
        rows = session.execute(select(Setting.key, Setting.value).where(Setting.key.startswith(SETTING_PREFIX)))
        stored = {key.removeprefix(SETTING_PREFIX): value for key, value in rows}
    try:
        return replace(BootLimits(), **check_limits(stored))
    except UserError as exc:  # a stored value is checked when saved; one edited by hand is named here
        raise UserError(f"database setting {SETTING_PREFIX}{exc.message.removeprefix('limits ')}") from None


def save_limits(db: Database, values: Mapping[str, object]) -> dict[str, Any]:
    """Store limits as ``bootserver.NAME`` settings (checked first: nothing is written when one is bad)."""
    checked = check_limits(values)
    with db.session() as session:
        for name, value in checked.items():
            row = session.get(Setting, SETTING_PREFIX + name)
            if row is None:
                session.add(Setting(key=SETTING_PREFIX + name, value=value))
            else:
                row.value = value
    return checked


def effective_limits(db: Database, overrides: Mapping[str, object], *, save: bool = False) -> BootLimits:
    """The limits one run of the boot server uses: stored settings, then ``overrides`` (saved when ``save``)."""
    checked = check_limits(overrides)
    if save and checked:
        save_limits(db, checked)
    return replace(load_limits(db), **checked)
