"""``haoscar exec`` and ``haoscar copy`` run from a head against lab hosts running sshd with the cluster key, one
of them crashed: the others' output is gathered, the down one is reported unreachable, the exit status is 1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.exec_lab import exec_lab_spec, haoscar_in, lab_sshds, prepare_state
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

NODES = ["node001", "node002", "node003", "node004"]  # exec_lab_spec(4): two heads, a witness, a user, 4 nodes
DOWN = "node004"


def test_exec_and_copy_gather_the_living_and_report_the_down_node(make_lab: MakeLab, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = exec_lab_spec(4)
    lab = make_lab(spec)
    state = tmp_path / "state"
    public_key = prepare_state(state, spec)
    with lab_sshds(lab, NODES, [public_key]):
        lab.crash(DOWN)

        done = haoscar_in(lab, "head1", state, ["exec", "@compute", "-t", "3", "--", "hostname;", "echo", "same"])
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith("---------------\nnode001\n---------------\nnode001\n")
        assert "---------------\nnode003\n---------------\nnode003\n" in done.stdout
        assert DOWN not in done.stdout
        rows = [line.split(maxsplit=2) for line in done.stderr.splitlines()]
        assert ["node[001-003]", "ok", "-"] in rows, done.stderr
        assert [row[:2] for row in rows if row[:1] == [DOWN]] == [[DOWN, "unreachable"]], done.stderr

        done = haoscar_in(lab, "head1", state, ["exec", "--json", "-t", "3", "node[001-004]", "--", "uname", "-n"])
        assert done.returncode == 1, done.stderr
        results = json.loads(done.stdout)["results"]
        assert {node: results[node]["output"] for node in NODES[:3]} == {node: node for node in NODES[:3]}
        assert all(results[node]["exit_code"] == 0 for node in NODES[:3])
        assert results[DOWN]["exit_code"] is None
        assert results[DOWN]["error"].startswith("unreachable: ")

        source = tmp_path / "motd"
        source.write_text("hello nodes\n")
        done = haoscar_in(lab, "head1", state, ["copy", "-t", "3", "@compute", str(source), "/etc/haoscar/motd"])
        assert done.returncode == 1, done.stdout + done.stderr
        for node in NODES[:3]:
            assert (lab.host_dir(node) / "etc/haoscar/motd").read_text() == "hello nodes\n"
        assert [DOWN, "unreachable"] in [line.split()[:2] for line in done.stderr.splitlines()], done.stderr

        done = haoscar_in(lab, "head1", state, ["exec", "node[001-003]", "--", "true"])
        assert done.returncode == 0, done.stdout + done.stderr


def test_exec_with_an_unknown_group_runs_nothing_and_exits_2(make_lab: MakeLab, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = exec_lab_spec(1)
    lab = make_lab(spec)
    state = tmp_path / "state"
    prepare_state(state, spec)
    done = haoscar_in(lab, "head1", state, ["exec", "@rack1", "--", "touch", "/tmp/never"])
    assert done.returncode == 2
    assert "NODESET: unknown group @rack1" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_second_exec_reuses_the_connections_and_a_node_lost_meanwhile_is_reported(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    """The first exec leaves one authenticated connection per node (ControlPersist); the next runs over them. A
    node that loses power while its connection is held (frozen, links down: no RST) is reported unreachable once
    the keepalives give up, and the others answer."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    nodes = NODES[:3]
    spec = exec_lab_spec(len(nodes))
    lab = make_lab(spec)
    # A short state directory, so the control sockets live in STATE/ssh/mux (tmp_path is too long for a socket).
    state = Path(tempfile.mkdtemp(prefix="hx-", dir="/tmp"))
    public_key = prepare_state(state, spec)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, state, ignore_errors=True)
        stack.enter_context(lab_sshds(lab, nodes, [public_key]))
        _reuse_then_lose_one(lab, state, nodes)


def _reuse_then_lose_one(lab: Lab, state: Path, nodes: list[str]) -> None:
    first = haoscar_in(lab, "head1", state, ["exec", "--json", "@compute", "--", "echo $PPID"])
    assert first.returncode == 0, first.stderr
    sockets = sorted(p.name for p in (state / "ssh" / "mux").iterdir() if p.is_socket())
    assert len(sockets) == len(nodes)
    second = haoscar_in(lab, "head1", state, ["exec", "--json", "@compute", "--", "echo $PPID"])
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (state / "ssh" / "mux").iterdir() if p.is_socket()) == sockets
    # Each node's shell was started by the same sshd session process both times: one login, two commands.
    parents = [{n: r["output"] for n, r in json.loads(run.stdout)["results"].items()} for run in (first, second)]
    assert parents[0] == parents[1] and all(pid.isdigit() for pid in parents[0].values())

    lab.freeze(nodes[-1], links=True)
    done = haoscar_in(lab, "head1", state, ["exec", "--json", "-t", "3", "@compute", "--", "uname", "-n"])
    assert done.returncode == 1, done.stdout + done.stderr
    results = json.loads(done.stdout)["results"]
    assert {node: results[node]["output"] for node in nodes[:2]} == {node: node for node in nodes[:2]}
    assert results[nodes[-1]]["exit_code"] is None
    assert results[nodes[-1]]["error"].startswith("unreachable: ")
