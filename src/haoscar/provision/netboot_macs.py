"""Giving nodes their MAC addresses (OSCAR's Assign MAC to Node, Assign All, Import/Export MACs).

Every operation checks all of its pairs against the database before writing any, then writes them in one
transaction: a bad line in an import file changes nothing. An assigned MAC leaves the sightings list, the node goes
from ``defined`` to ``mac-assigned``, and the caller syncs the nodes' DHCP entries.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from haoscar.db.models import Interface, MacSighting, Node
from haoscar.db.session import record_event
from haoscar.errors import FieldError, FieldProblem, NotFound, UserError, flag_name
from haoscar.fsutil import atomic_write
from haoscar.provision.install_states import InstallState
from haoscar.provision.netboot_snapshot import Database
from haoscar.spec.nodes import expand_nodeset
from haoscar.spec.types import parse_mac


@dataclass(frozen=True)
class Assignment:
    node: str
    mac: str

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "mac": self.mac}


@dataclass(frozen=True)
class Sighting:
    mac: str
    interface: str
    first_seen: datetime
    last_seen: datetime
    seen_count: int
    message_type: str
    client_arch: str

    def as_dict(self) -> dict[str, object]:
        return {
            "mac": self.mac,
            "interface": self.interface,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "seen_count": self.seen_count,
            "message_type": self.message_type,
            "client_arch": self.client_arch,
        }


def checked_mac(text: str, field: str) -> str:
    """The MAC of a request field, normalised; a FieldError naming the field when it is none."""
    try:
        return parse_mac(text)
    except ValueError as exc:
        raise FieldError(field, str(exc), sep=": ") from None


def _refused(problems: list[str | FieldProblem]) -> UserError:
    """One error for every problem: a FieldError when each names a request field."""
    summary = f"{len(problems)} problems, nothing was assigned"
    fields = [p for p in problems if isinstance(p, FieldProblem)]
    if len(fields) == 1 == len(problems):
        return FieldError(fields[0].field, fields[0].detail, sep=fields[0].sep)
    if len(fields) == len(problems):
        return FieldError.several(fields, summary)
    lines = [p if isinstance(p, str) else p.line(flag_name) for p in problems]
    return UserError(lines[0] if len(lines) == 1 else summary, lines if len(lines) > 1 else None)


def _check(session: Session, pairs: Sequence[tuple[str, str, str]], field: str | None) -> list[Assignment]:
    """Validate (node, mac, where) triples against each other and the database; all problems in one error.

    ``where`` places a problem (``macs.csv:3``); ``field`` instead names the one request field being set (``node
    set``'s ``mac``): its problems are then a FieldError, ``--mac 52:54:... already belongs to node node01``."""
    rows = session.execute(
        select(Node.name, Interface.network, Interface.mac).join(Interface, Interface.node_id == Node.id)
    ).all()
    private_mac = {name: mac for name, network, mac in rows if network == "private"}
    # Any NIC's MAC counts, not only private ones: a head's public NIC must not be handed to a node.
    owner = {mac: name for name, _network, mac in rows if mac}
    problems: list[str | FieldProblem] = []
    result: list[Assignment] = []
    seen_nodes: dict[str, str] = {}
    seen_macs: dict[str, str] = {}
    for node, raw_mac, where in pairs:
        try:
            mac = parse_mac(raw_mac)
        except ValueError as exc:
            problems.append(FieldProblem(field, str(exc), ": ") if field else f"{where}: {exc}")
            continue
        if node not in private_mac:
            problems.append(f"{where}: unknown node {node!r} (or it has no private interface); see haoscar node list")
            continue
        if node in seen_nodes:
            problems.append(f"{where}: node {node} is already given a MAC at {seen_nodes[node]}; one MAC per node")
            continue
        if mac in seen_macs:
            problems.append(f"{where}: MAC {mac} is already given at {seen_macs[mac]}; each NIC has its own MAC")
            continue
        holder = owner.get(mac)
        if holder is not None and holder != node:
            detail = f"already belongs to node {holder}; each NIC has its own MAC; check the address you collected"
            problems.append(FieldProblem(field, f"{mac} {detail}") if field else f"{where}: MAC {mac} {detail}")
            continue
        seen_nodes[node], seen_macs[mac] = where, where
        result.append(Assignment(node, mac))
    if problems:
        raise _refused(problems)
    return result


def _write(session: Session, assignments: list[Assignment], source: str, record: bool) -> None:
    for item in assignments:
        node_id = select(Node.id).where(Node.name == item.node).scalar_subquery()
        session.execute(
            update(Interface).where(Interface.node_id == node_id, Interface.network == "private").values(mac=item.mac)
        )
        session.execute(
            update(Node)
            .where(Node.name == item.node, Node.install_state == InstallState.DEFINED.value)
            .values(install_state=InstallState.MAC_ASSIGNED.value)
        )
    if assignments:
        session.execute(delete(MacSighting).where(MacSighting.mac.in_([a.mac for a in assignments])))
    if assignments and record:
        record_event(
            session,
            "mac.assigned",
            f"{source}: "
            + ", ".join(f"{a.node}={a.mac}" for a in assignments[:5])
            + (f" and {len(assignments) - 5} more" if len(assignments) > 5 else ""),
            data={"assignments": [a.as_dict() for a in assignments]},
        )


def assign_in_session(
    session: Session,
    pairs: Sequence[tuple[str, str, str]],
    source: str,
    *,
    field: str | None = None,
    record: bool = True,
) -> list[Assignment]:
    """THE way a node gets its MAC (``mac assign``, ``assign-all``, ``import``, ``collect --auto``, ``node set
    mac``, standby clone): check every (node, mac, where) pair, then write them all in the caller's transaction.
    The MAC leaves the sightings, a ``defined`` node becomes ``mac-assigned``; ``record`` False leaves the event
    to a caller that records its own (``node set``). The caller syncs the nodes' DHCP entries."""
    assignments = _check(session, pairs, field)
    _write(session, assignments, source, record)
    return assignments


def assign_macs(db: Database, pairs: Sequence[tuple[str, str, str]], source: str = "mac assign") -> list[Assignment]:
    """Assign (node, mac, where-for-errors) pairs, all or nothing."""
    with db.session() as session:
        return assign_in_session(session, pairs, source)


def list_sightings(db: Database) -> list[Sighting]:
    """Unassigned MACs seen on the wire, in order of arrival."""
    with db.session() as session:
        rows = session.scalars(select(MacSighting).order_by(MacSighting.first_seen, MacSighting.id)).all()
        return [
            Sighting(r.mac, r.interface, r.first_seen, r.last_seen, r.seen_count, r.message_type, r.client_arch)
            for r in rows
        ]


def assign_all(db: Database, nodeset: str) -> list[Assignment]:
    """Sightings in order of arrival to the nodes of NODESET that have no MAC yet, in node-set order."""
    wanted = expand_nodeset(nodeset)
    with db.session() as session:
        rows = session.execute(
            select(Node.name, Interface.mac)
            .join(Interface, Interface.node_id == Node.id)
            .where(Interface.network == "private")
        ).all()
        macs = {name: mac for name, mac in rows}
        unknown = [name for name in wanted if name not in macs]
        if unknown:
            raise NotFound(f"unknown node(s) {', '.join(unknown[:5])} in {nodeset}; see haoscar node list")
        free = [name for name in wanted if not macs[name]]
        sightings = session.scalars(select(MacSighting.mac).order_by(MacSighting.first_seen, MacSighting.id)).all()
        pairs = [(node, mac, f"sighting {mac}") for node, mac in zip(free, sightings, strict=False)]
        return assign_in_session(session, pairs, "mac assign-all")


def parse_csv(path: Path) -> list[tuple[str, str, str]]:
    """``node,mac`` lines (an optional header ``node,mac``; blank lines and # comments skipped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    pairs: list[tuple[str, str, str]] = []
    problems: list[str] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells] == ["node", "mac"]:
            continue
        if len(cells) != 2 or not all(cells):
            problems.append(f"{path}:{number}: expected two fields node,mac (e.g. node01,52:54:00:12:34:56)")
            continue
        pairs.append((cells[0], cells[1], f"{path}:{number}"))
    if problems:
        raise UserError(
            problems[0] if len(problems) == 1 else f"{len(problems)} bad lines in {path}, nothing imported",
            problems if len(problems) > 1 else None,
        )
    return pairs


def import_csv(db: Database, path: Path) -> list[Assignment]:
    return assign_macs(db, parse_csv(path), source=f"mac import {path}")


def export_csv(db: Database, path: Path) -> int:
    """Write ``node,mac`` for every node with a private MAC; returns how many."""
    with db.session() as session:
        rows = session.execute(
            select(Node.name, Interface.mac)
            .join(Interface, Interface.node_id == Node.id)
            .where(Interface.network == "private", Interface.mac.is_not(None))
            .order_by(Node.name)
        ).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["node", "mac"])
    writer.writerows(rows)
    atomic_write(path, out.getvalue())
    return len(rows)
