"""The node, standby and bench define-clients commands as a user runs them: output, exit status, no traceback."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

Cli = Callable[..., tuple[int, str, str]]  # the fixtures of tests/unit/conftest.py
Dump = Callable[[str], list[str]]


def test_node_add_then_list(state: str, haoscar: Cli) -> None:
    code, out, _ = haoscar(
        "--state-dir", state, "node", "add", "--image", "oscarimage", "--base-name", "cn",
        "--count", "12", "--start-number", "1", "--padding", "3", "--start-ip", "198.18.0.120", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) | {} == {
        "group": "cn", "image": "oscarimage", "count": 12, "nodeset": "cn[001-012]",
        "first_ip": "198.18.0.120", "last_ip": "198.18.0.131",
    }  # fmt: skip
    code, out, _ = haoscar("--state-dir", state, "node", "list", "cn[010-012]", "--json")
    assert code == 0
    assert [(n["name"], n["ip"], n["install_state"]) for n in json.loads(out)] == [
        ("cn010", "198.18.0.129", "defined"),
        ("cn011", "198.18.0.130", "defined"),
        ("cn012", "198.18.0.131", "defined"),
    ]
    code, out, _ = haoscar("--state-dir", state, "node", "list")
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
    state: str, haoscar: Cli, dump: Dump, argv: list[str], expected: str
) -> None:
    before = dump(state)
    code, _, err = haoscar("--state-dir", state, *argv)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert dump(state) == before


def test_delete_asks_first(state: str, haoscar: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, _ = haoscar("--state-dir", state, "node", "delete", "node[01-02]")
    assert code == 1  # aborted
    assert len(json.loads(haoscar("--state-dir", state, "node", "list", "--json")[1])) == 4
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, _ = haoscar("--state-dir", state, "node", "delete", "node[01-02]")
    assert code == 0 and "deleted 2 nodes: node[01-02]" in out
    assert len(json.loads(haoscar("--state-dir", state, "node", "list", "--json")[1])) == 2


def test_standby_add_after_deleting_the_spec_standby(state: str, haoscar: Cli) -> None:
    assert haoscar("--state-dir", state, "node", "delete", "head2", "--yes")[0] == 0
    code, out, _ = haoscar(
        "--state-dir", state, "standby", "add", "--image", "serverimage",
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


def test_bench_define_clients_reports_seconds(haoscar: Cli) -> None:
    code, out, _ = haoscar("bench", "define-clients", "--nodes", "300", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["nodes"] == 300 and result["nodeset"] == "node[00001-00300]" and result["seconds"] > 0
