"""`haoscar spec apply`: a spec loaded into the cluster database, idempotently."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import func, select

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.commands.nodes import DefineClients, define_clients, list_nodes, set_nodes
from haoscar.db.models import Event, Interface, Node
from haoscar.db.session import Database, open_database
from haoscar.errors import UserError
from haoscar.spec import ClusterSpec, check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()


def spec_from(text: str) -> ClusterSpec:
    spec, problems = check_text(text, "test.yaml")
    assert spec is not None, problems
    return spec


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    open_database(state).close()
    return state


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    shutil.copytree(template, tmp_path / "state")
    database = open_database(tmp_path / "state")
    yield database
    database.close()


def snapshot(db: Database) -> list[tuple[object, ...]]:
    """Every node and interface row with its timestamps, and the number of events."""
    with db.session() as session:
        nodes = [tuple(row) for row in session.execute(select(Node.__table__).order_by(Node.id))]
        ifaces = [tuple(row) for row in session.execute(select(Interface.__table__).order_by(Interface.id))]
        events = session.scalar(select(func.count()).select_from(Event))
    return [*nodes, *ifaces, ("events", events)]


def test_apply_twice_adds_once_then_writes_nothing(db: Database) -> None:
    first = apply_spec(db, spec_from(LAB))
    assert first.added == ["head1", "head2", "node01", "node02"]
    assert "network private" in first.other and "image oscarimage" in first.other
    rows = {row.name: row for row in list_nodes(db)}
    assert (rows["node02"].ip, rows["node02"].group, rows["node02"].image) == ("198.18.0.102", "compute", "oscarimage")
    assert (rows["head2"].role, rows["head2"].ip) == ("standby", "198.18.0.2")
    before = snapshot(db)

    second = apply_spec(db, spec_from(LAB))
    assert (second.added, second.changed, second.other) == ([], [], [])
    assert sorted(second.unchanged) == ["head1", "head2", "node01", "node02"]
    assert not second.wrote
    assert snapshot(db) == before  # same rows, same updated_at, no new event


def test_removed_client_is_reported_and_deleted_only_with_prune(db: Database) -> None:
    apply_spec(db, spec_from(LAB))
    smaller = spec_from(LAB.replace("    count: 2\n", "    count: 1\n"))
    pending = apply_spec(db, smaller)
    assert pending.removed_pending == ["node02"] and pending.removed == []
    assert "node02" in {row.name for row in list_nodes(db)}

    pruned = apply_spec(db, smaller, prune=True)
    assert pruned.removed == ["node02"]
    assert [row.name for row in list_nodes(db)] == ["head1", "head2", "node01"]
    assert apply_spec(db, smaller, prune=True).wrote is False


def test_nodes_defined_by_hand_are_never_pruned(db: Database) -> None:
    apply_spec(db, spec_from(LAB))
    define_clients(db, DefineClients(image="oscarimage", base_name="extra", count=2, start_ip="198.18.0.150"))
    report = apply_spec(db, spec_from(LAB), prune=True)
    assert report.removed == [] and report.removed_pending == []
    assert {"extra1", "extra2"} <= {row.name for row in list_nodes(db)}


def test_mac_assigned_later_is_kept_until_the_spec_names_one(db: Database) -> None:
    apply_spec(db, spec_from(LAB))
    set_nodes(db, "node01", mac="52:54:00:00:01:01")
    again = apply_spec(db, spec_from(LAB))
    assert again.changed == [] and not again.wrote
    node01 = list_nodes(db, "node01")[0]
    assert (node01.mac, node01.install_state) == ("52:54:00:00:01:01", "mac-assigned")

    with_macs = LAB.replace(
        "    netmask: 255.255.255.0\n\nha:",
        "    netmask: 255.255.255.0\n    macs:\n      node01: 52:54:00:00:01:99\n\nha:",
    )
    report = apply_spec(db, spec_from(with_macs))
    assert report.changed == ["node01"]
    assert list_nodes(db, "node01")[0].mac == "52:54:00:00:01:99"


def test_moved_client_range_changes_addresses(db: Database) -> None:
    apply_spec(db, spec_from(LAB))
    report = apply_spec(db, spec_from(LAB.replace("start_ip: 198.18.0.101", "start_ip: 198.18.0.102")))
    assert report.changed == ["node01", "node02"]
    assert [row.ip for row in list_nodes(db, "node[01-02]")] == ["198.18.0.102", "198.18.0.103"]


def test_spec_address_held_by_a_hand_defined_node_is_refused_and_nothing_changes(db: Database) -> None:
    apply_spec(db, spec_from(LAB))
    define_clients(db, DefineClients(image="oscarimage", base_name="hand", count=1, start_ip="198.18.0.103"))
    before = snapshot(db)
    with pytest.raises(UserError) as error:
        apply_spec(db, spec_from(LAB.replace("    count: 2\n", "    count: 3\n")))
    assert "198.18.0.103 is held by node hand1" in str(error.value)
    assert snapshot(db) == before


def test_cli_spec_apply_json_and_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(LAB)
    state = str(tmp_path / "state")
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "spec", "apply", str(spec_file), "--json"])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["added"] == ["head1", "head2", "node01", "node02"]

    spec_file.write_text(LAB.replace("start_ip: 198.18.0.101", "start_ip: 198.18.0.300"))
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "spec", "apply", str(spec_file)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "198.18.0.300" in err and "Traceback" not in err
