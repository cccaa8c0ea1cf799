"""The node, standby and bench define-clients commands as a user runs them: output, exit status, no traceback."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()


def haoscar(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with the lab spec applied."""
    directory = tmp_path_factory.mktemp("template")
    spec, problems = check_text(LAB, "lab.yaml")
    assert spec is not None, problems
    db = open_database(directory)
    apply_spec(db, spec)
    db.close()
    return directory


@pytest.fixture
def state(template: Path, tmp_path: Path) -> str:
    shutil.copytree(template, tmp_path / "state")
    return str(tmp_path / "state")


def dump(state: str) -> list[str]:
    """The whole database as SQL, to show that a refused command changed nothing."""
    with sqlite3.connect(Path(state) / "haoscar.db") as connection:
        return list(connection.iterdump())


def test_node_add_then_list(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = haoscar(
        capsys, "--state-dir", state, "node", "add", "--image", "oscarimage", "--base-name", "cn",
        "--count", "12", "--start-number", "1", "--padding", "3", "--start-ip", "198.18.0.120", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) | {} == {
        "group": "cn", "image": "oscarimage", "count": 12, "nodeset": "cn[001-012]",
        "first_ip": "198.18.0.120", "last_ip": "198.18.0.131",
    }  # fmt: skip
    code, out, _ = haoscar(capsys, "--state-dir", state, "node", "list", "cn[010-012]", "--json")
    assert code == 0
    assert [(n["name"], n["ip"], n["install_state"]) for n in json.loads(out)] == [
        ("cn010", "198.18.0.129", "defined"),
        ("cn011", "198.18.0.130", "defined"),
        ("cn012", "198.18.0.131", "defined"),
    ]
    code, out, _ = haoscar(capsys, "--state-dir", state, "node", "list")
    assert code == 0
    assert "16 nodes" in out and "head1" in out and "cn012" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["node", "add", "--image", "oscarimage", "--base-name", "x", "--count", "300", "--start-ip", "198.18.0.10"],
         "at most 245 fit"),
        (["node", "add", "--image", "ghost", "--nodeset", "x[1-2]", "--start-ip", "198.18.0.10"],
         "unknown image 'ghost'"),
        (["node", "set", "node01", "--mac", "zz:54:00:00:00:01"], "is not a MAC address"),
        (["node", "set", "node09", "--boot-mode", "localboot"], "unknown node node09"),
        (["node", "list", "node[01-03]"], "unknown node node03"),
        (["node", "delete", "nope", "--yes"], "unknown node nope"),
        (["standby", "add", "--alias-ip", "198.19.0.10", "--local-ip", "198.18.0.9"], "already defined as head2"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_message_and_changes_nothing(
    state: str, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    before = dump(state)
    code, _, err = haoscar(capsys, "--state-dir", state, *argv)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert dump(state) == before


def test_delete_asks_first(state: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, _ = haoscar(capsys, "--state-dir", state, "node", "delete", "node[01-02]")
    assert code == 1  # aborted
    assert len(json.loads(haoscar(capsys, "--state-dir", state, "node", "list", "--json")[1])) == 4
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, _ = haoscar(capsys, "--state-dir", state, "node", "delete", "node[01-02]")
    assert code == 0 and "deleted 2 nodes: node[01-02]" in out
    assert len(json.loads(haoscar(capsys, "--state-dir", state, "node", "list", "--json")[1])) == 2


def test_standby_add_after_deleting_the_spec_standby(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert haoscar(capsys, "--state-dir", state, "node", "delete", "head2", "--yes")[0] == 0
    code, out, _ = haoscar(
        capsys, "--state-dir", state, "standby", "add", "--image", "serverimage",
        "--primary-public-interface", "eth1", "--standby-public-interface", "eth1", "--alias-ip", "198.19.0.10",
        "--local-ip", "198.18.0.2", "--netmask", "255.255.255.0", "--hostname", "head2", "--json",
    )  # fmt: skip
    assert code == 0
    shown = json.loads(out)
    assert (shown["name"], shown["role"], shown["ip"], shown["alias_ip"]) == (
        "head2",
        "standby",
        "198.18.0.2",
        "198.19.0.10",
    )


def test_bench_define_clients_reports_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = haoscar(capsys, "bench", "define-clients", "--nodes", "300", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["nodes"] == 300 and result["nodeset"] == "node[00001-00300]" and result["seconds"] > 0
