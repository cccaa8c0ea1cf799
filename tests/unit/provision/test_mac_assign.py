"""MAC collection and assignment on a real database: order of arrival, all-or-nothing checks, CSV, --auto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from haoscar.commands.apply import apply_spec
from haoscar.commands.nodes import list_nodes
from haoscar.db.models import Node
from haoscar.db.session import DB_FILE, Database, open_database
from haoscar.errors import UserError
from haoscar.lab.defaults import default_spec
from haoscar.provision.dhcp_packet import build_frame, build_request
from haoscar.provision.mac_collect import collect
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_all, assign_macs, export_csv, import_csv, list_sightings


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    db.close()
    return state / DB_FILE


@pytest.fixture
def state(tmp_path: Path, template: Path) -> Path:
    shutil.copy(template, tmp_path / DB_FILE)
    return tmp_path


@pytest.fixture
def db(state: Path) -> Iterator[Database]:
    database = open_database(state)
    yield database
    database.close()


def macs(db: Database) -> dict[str, str | None]:
    return {row.name: row.mac for row in list_nodes(db)}


class FakeWire:
    """Frames as an AF_PACKET socket would deliver them, then silence."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = list(frames)
        self.closed = False

    def receive(self, timeout: float) -> bytes | None:
        return self.frames.pop(0) if self.frames else None

    def close(self) -> None:
        self.closed = True


def frame(mac: str, kind: int = 1, arch: int | None = None) -> bytes:
    return build_frame(build_request(mac, kind, client_arch=arch), mac)


def test_collect_records_unknown_macs_in_order_of_arrival(db: Database, state: Path) -> None:
    assign_macs(db, [("node01", "52:54:00:aa:00:01", "test")])
    wire = FakeWire(
        [
            frame("52:54:00:bb:00:02", arch=7),
            b"\x00" * 7,  # garbage
            frame("52:54:00:aa:00:01"),  # node01: known
            frame("52:54:00:bb:00:01"),
            frame("52:54:00:bb:00:02", kind=3),  # seen again
            frame("52:54:00:bb:00:01")[:-30],  # truncated
        ]
    )
    result = collect(db, state, "eth0", timeout=5, source=wire)
    assert wire.closed
    assert [s.request.mac for s in result.sightings if s.new] == ["52:54:00:bb:00:02", "52:54:00:bb:00:01"]
    assert result.known == 1 and result.bad_packets == 2
    seen = list_sightings(db)
    assert [(s.mac, s.seen_count, s.client_arch) for s in seen] == [
        ("52:54:00:bb:00:02", 2, "efi-x64"),
        ("52:54:00:bb:00:01", 1, ""),
    ]


def test_assign_all_gives_sightings_in_arrival_order_to_nodes_in_nodeset_order(db: Database, state: Path) -> None:
    collect(db, state, "eth0", timeout=5, source=FakeWire([frame("52:54:00:bb:00:09"), frame("52:54:00:bb:00:03")]))
    assigned = assign_all(db, "node[01-02]")
    assert [(a.node, a.mac) for a in assigned] == [("node01", "52:54:00:bb:00:09"), ("node02", "52:54:00:bb:00:03")]
    assert list_sightings(db) == []
    with db.session() as session:
        states = dict(session.execute(select(Node.name, Node.install_state)).all())
    assert states["node01"] == states["node02"] == "mac-assigned"


def test_collect_auto_binds_new_macs_and_writes_their_dhcp_entry(db: Database, state: Path) -> None:
    result = collect(db, state, "eth0", timeout=5, auto=True, source=FakeWire([frame("52:54:00:cc:00:01")]))
    assert [(a.node, a.mac) for a in result.assigned] == [("node01", "52:54:00:cc:00:01")]
    host = NetbootPaths.under(state).host_file("node01").read_text()
    assert host == "52:54:00:cc:00:01,198.18.0.101,node01\n"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("node01", "52:54:00:zz:00:01", "x")], "not a MAC address"),
        ([("node01", "01:00:5e:00:00:01", "x")], "multicast"),
        ([("node99", "52:54:00:aa:00:01", "x")], "unknown node 'node99'"),
        ([("node01", "52:54:00:aa:00:01", "a"), ("node02", "52:54:00:AA:00:01", "b")], "already given at a"),
        ([("node01", "52:54:00:aa:00:01", "a"), ("node01", "52:54:00:aa:00:02", "b")], "one MAC per node"),
    ],
)
def test_bad_assignments_change_nothing(db: Database, pairs: list[tuple[str, str, str]], message: str) -> None:
    before = macs(db)
    with pytest.raises(UserError, match=message):
        assign_macs(db, pairs)
    assert macs(db) == before


def test_a_mac_owned_by_another_node_is_refused(db: Database) -> None:
    assign_macs(db, [("node01", "52:54:00:aa:00:01", "x")])
    with pytest.raises(UserError, match="already belongs to node node01"):
        assign_macs(db, [("node02", "52:54:00:aa:00:01", "x")])


def test_import_checks_every_line_first_and_names_file_and_line(db: Database, tmp_path: Path) -> None:
    bad = tmp_path / "macs.csv"
    bad.write_text("node,mac\nnode01,52:54:00:aa:00:01\n\nnode02,not-a-mac\nhead2\n")
    before = macs(db)
    with pytest.raises(UserError) as caught:
        import_csv(db, bad)
    assert f"{bad}:5: expected two fields" in str(caught.value)
    assert macs(db) == before
    bad.write_text("node01,52:54:00:aa:00:01\nnode02,not-a-mac\n")
    with pytest.raises(UserError, match=f"{bad}:2: 'not-a-mac' is not a MAC"):
        import_csv(db, bad)
    assert macs(db) == before


def test_export_then_import_round_trips(db: Database, tmp_path: Path) -> None:
    assign_macs(db, [("node01", "52:54:00:aa:00:01", "x"), ("head2", "52:54:00:aa:00:0f", "x")])
    out = tmp_path / "out.csv"
    assert export_csv(db, out) == 2
    assert out.read_text() == "node,mac\nhead2,52:54:00:aa:00:0f\nnode01,52:54:00:aa:00:01\n"
    out.write_text(out.read_text() + "node02,52:54:00:aa:00:02\n")
    assert len(import_csv(db, out)) == 3
    assert macs(db)["node02"] == "52:54:00:aa:00:02"


def test_cli_bad_mac_exits_2_without_traceback(state: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "haoscar", "--state-dir", str(state), "mac", "assign", "node01", "52:54:00:aa:00"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "is not a MAC address" in proc.stderr and "Traceback" not in proc.stderr
