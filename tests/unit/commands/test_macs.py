"""The MAC commands through ``Env``, and the one assignment path they share with ``node set`` and ``--auto``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from haoscar.commands import macs
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.nodes import list_nodes, set_nodes
from haoscar.db.models import Interface, Node
from haoscar.db.session import DB_FILE, open_database
from haoscar.errors import UserError
from haoscar.lab.defaults import default_spec
from haoscar.provision.dhcp_packet import build_frame, build_request
from haoscar.provision.netboot_files import NetbootPaths


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    db.close()
    return state / DB_FILE


@pytest.fixture
def env(tmp_path: Path, template: Path) -> Iterator[Env]:
    shutil.copy(template, tmp_path / DB_FILE)
    lines: list[str] = []
    with Env(tmp_path, progress=lines.append) as environment:
        yield environment


class FakeWire:
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = list(frames)

    def receive(self, timeout: float) -> bytes | None:
        return self.frames.pop(0) if self.frames else None

    def close(self) -> None:
        pass


def frame(mac: str, hostname: str | None = None) -> bytes:
    return build_frame(build_request(mac, 1, hostname=hostname), mac)


def test_collect_auto_reports_each_mac_as_it_arrives_and_binds_it(env: Env) -> None:
    heard: list[tuple[str, str, str | None]] = []
    wire = FakeWire([frame("52:54:00:cc:00:01", "[/x]pxe"), frame("52:54:00:cc:00:02")])
    result = macs.collect(
        env,
        macs.CollectMacs(interface="eth0", timeout=5, auto=True),
        on_seen=lambda seen: heard.append((seen.request.mac, seen.request.hostname, seen.assigned_to)),
        source=wire,
    )
    assert heard == [("52:54:00:cc:00:01", "[/x]pxe", "node01"), ("52:54:00:cc:00:02", "", "node02")]
    assert [(a.node, a.mac) for a in result.assigned] == [
        ("node01", "52:54:00:cc:00:01"),
        ("node02", "52:54:00:cc:00:02"),
    ]
    assert (
        NetbootPaths.under(env.state_dir).host_file("node02").read_text() == "52:54:00:cc:00:02,198.18.0.102,node02\n"
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (macs.CollectMacs(interface=" "), "interface:"),
        (macs.CollectMacs(interface="eth0", timeout=0), "timeout:"),
        (macs.CollectMacs(interface="eth0", count=0), "count:"),
    ],
)
def test_a_bad_collect_request_names_its_field_and_listens_to_nothing(
    env: Env, request_: macs.CollectMacs, field: str
) -> None:
    wire = FakeWire([frame("52:54:00:cc:00:01")])
    with pytest.raises(UserError, match=field):
        macs.collect(env, request_, source=wire)
    assert len(wire.frames) == 1
    assert macs.list_sightings(env) == []


def test_assign_writes_the_dhcp_entry_at_once(env: Env) -> None:
    result = macs.assign(env, macs.AssignMac(node="node01", mac="52-54-00-AA-00-01"))
    assert result.as_dict() == {"assigned": [{"node": "node01", "mac": "52:54:00:aa:00:01"}]}
    assert (
        NetbootPaths.under(env.state_dir).host_file("node01").read_text() == "52:54:00:aa:00:01,198.18.0.101,node01\n"
    )


def test_node_set_mac_takes_the_same_path_as_mac_assign(env: Env) -> None:
    macs.collect(env, macs.CollectMacs(interface="eth0", timeout=5), source=FakeWire([frame("52:54:00:dd:00:01")]))
    assert [s.mac for s in macs.list_sightings(env)] == ["52:54:00:dd:00:01"]
    set_nodes(env.database, "node02", mac="52:54:00:dd:00:01")
    assert macs.list_sightings(env) == []  # owned now: no longer an unassigned sighting
    with env.database.session() as session:
        state = session.scalar(select(Node.install_state).where(Node.name == "node02"))
    assert state == "mac-assigned"


def test_a_mac_on_any_nic_of_another_node_is_refused_by_every_door(env: Env) -> None:
    with env.database.session() as session:
        nic = session.scalars(
            select(Interface).join(Node).where(Node.name == "head1", Interface.network != "private")
        ).first()
        assert nic is not None
        nic.mac = "52:54:00:ee:00:01"
    before = {row.name: row.mac for row in list_nodes(env.database)}
    with pytest.raises(UserError, match="MAC 52:54:00:ee:00:01 already belongs to node head1"):
        macs.assign(env, macs.AssignMac(node="node01", mac="52:54:00:ee:00:01"))
    with pytest.raises(UserError, match="--mac 52:54:00:ee:00:01 already belongs to node head1"):
        set_nodes(env.database, "node01", mac="52:54:00:ee:00:01")
    assert {row.name: row.mac for row in list_nodes(env.database)} == before


def test_export_reports_file_and_count(env: Env, tmp_path: Path) -> None:
    macs.assign(env, macs.AssignMac(node="node01", mac="52:54:00:aa:00:01"))
    out = tmp_path / "macs.csv"
    assert macs.export_csv(env, macs.ExportMacs(file=out)).as_dict() == {"file": str(out), "nodes": 1}
    assert macs.import_csv(env, macs.ImportMacs(file=out)).assignments[0].node == "node01"
