"""``haoscar exec``, ``copy`` and ``groups`` without a network: bad input runs nothing, outputs fold as clush -b
folds them, node groups come from the database, and ClusterShell's real Task drives a stand-in ``ssh`` on PATH
(a script that runs the command here, or fails as ssh fails for a host that is down)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.exec import (
    CopyRequest,
    ExecReport,
    ExecRequest,
    NodeResult,
    ShowGroups,
    copy_files,
    exec_command,
    gather,
    show_groups,
    ssh_failure,
)
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision.fanout import Limits, Outcome
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()

# Stands in for ssh: ClusterShell calls it as `ssh [options] NODE COMMAND`. A node whose name starts with "node02"
# is down. It also checks that haoscar's ssh configuration names the node's private address.
FAKE_SSH = """#!/bin/sh
for arg; do prev2="$prev"; prev="$arg"; done
node="$prev2"; command="$prev"
config="$2"
if [ "$node" = node02 ]; then
    echo "ssh: connect to host 198.18.0.102 port 22: No route to host" >&2
    exit 255
fi
grep -q "^Host $node\\$" "$config" || { echo "no Host $node in $config" >&2; exit 99; }
NODE="$node" exec sh -c "$command"
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    spec, problems = check_text(LAB.replace("count: 2", "count: 3"), "lab.yaml")
    assert spec is not None, problems
    env = Env(state_dir=tmp_path / "state")
    apply_spec(env.database, spec)
    yield env
    env.close()


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ssh", "scp"):
        script = bin_dir / name
        script.write_text(FAKE_SSH if name == "ssh" else "#!/bin/sh\nexit 0\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def _never(*_args: object, **_kwargs: object) -> dict[str, Outcome]:
    raise AssertionError("nothing may run on bad input")


# ------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("nodes", "words"),
    [
        ("@nope", "unknown group @nope; the groups are @compute, @heads"),
        ("node9", "unknown node node9"),
        ("node[01-03,09]", "unknown node node09"),
        ("node01!node01", "'node01!node01' names no node"),
        ("@compute&@heads", "names no node"),
        ("", "is empty"),
        ("node[", "is not a node set"),
        ("@other:compute", "no group source 'other'"),
    ],
)
def test_bad_node_sets_name_what_to_fix_and_run_nothing(env: Env, nodes: str, words: str) -> None:
    with pytest.raises(FieldError) as caught:
        exec_command(env, ExecRequest(nodes, "hostname"), shell=_never)
    assert caught.value.field == "nodes"
    assert words in str(caught.value)


def test_unknown_group_is_a_not_found_error(env: Env) -> None:
    with pytest.raises(FieldNotFound):
        exec_command(env, ExecRequest("@rack9", "hostname"), shell=_never)


def test_bad_limits_and_an_empty_command_are_reported_together(env: Env) -> None:
    request = ExecRequest("@compute", "  ", fanout=0, connect_timeout=0, command_timeout=-1)
    with pytest.raises(FieldError) as caught:
        exec_command(env, request, shell=_never)
    fields = [problem.field for problem in caught.value.problems]
    assert fields == ["fanout", "connect_timeout", "command_timeout", "command"]
    assert "nothing was run" in str(caught.value)


def test_copy_of_a_missing_source_names_it(env: Env, tmp_path: Path) -> None:
    with pytest.raises(FieldError) as caught:
        copy_files(env, CopyRequest("@compute", tmp_path / "missing"), copier=_never)
    assert caught.value.field == "source"
    assert "does not exist" in str(caught.value)


def test_cli_bad_input_exits_2_with_the_argument_named(
    env: Env, capsys: pytest.CaptureFixture[str], fake_ssh: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "exec", "@nope", "--", "hostname"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "NODESET: unknown group @nope" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------- folding


def test_identical_outputs_fold_under_one_node_set_in_node_order() -> None:
    folds = gather({"node10": "b", "node2": "a", "node1": "a", "node3": "b\nc", "node9": "b"})
    assert [(f.nodes, f.text) for f in folds] == [("node[1-2]", "a"), ("node3", "b\nc"), ("node[9-10]", "b")]


def test_summary_folds_nodes_that_ended_alike_successes_first() -> None:
    results = [
        NodeResult("node1", "x", "", 0, None),
        NodeResult("node2", "x", "", 0, None),
        NodeResult("node3", "", "oops", 3, None),
        NodeResult("node4", "", "", None, "unreachable: connect to host 10.0.0.4 port 22: No route to host"),
        NodeResult("node5", "", "", None, "unreachable: connect to host 10.0.0.5 port 22: No route to host"),
    ]
    report = ExecReport("node[1-5]", "true", results, 0.5)
    assert report.summary() == [
        ("node[1-2]", "ok", ""),
        ("node3", "exit 3", ""),
        ("node[4-5]", "unreachable", "No route to host"),
    ]
    assert report.exit_status == 1
    assert report.failed == ["node3", "node4", "node5"]
    assert ExecReport("node[1-2]", "true", results[:2], 0.1).exit_status == 0


def test_ssh_failures_are_told_from_a_command_exiting_255() -> None:
    assert ssh_failure(255, ["ssh: connect to host 1.2.3.4 port 22: Connection refused"]) == (
        "connect to host 1.2.3.4 port 22: Connection refused"
    )
    assert ssh_failure(255, ["Connection timed out during banner exchange"]) is not None
    assert ssh_failure(255, ["root@10.0.0.1: Permission denied (publickey)."]) == (
        "root@10.0.0.1: Permission denied (publickey)."
    )
    assert ssh_failure(255, ["my tool failed"]) is None
    assert ssh_failure(1, ["ssh: anything"]) is None


# ------------------------------------------------------------------------------ ClusterShell, stand-in ssh


def test_exec_runs_through_clustershell_and_reports_the_down_node(env: Env, fake_ssh: Path) -> None:
    report = exec_command(env, ExecRequest("@compute", 'echo "hello from $NODE"; echo same; test $NODE != node03'))
    by_node = {r.node: r for r in report.results}
    assert by_node["node01"].output == "hello from node01\nsame"
    assert by_node["node01"].exit_code == 0
    assert by_node["node03"].exit_code == 1
    assert by_node["node02"].exit_code is None
    assert by_node["node02"].error == "unreachable: connect to host 198.18.0.102 port 22: No route to host"
    assert report.exit_status == 1
    config = (env.state_dir / "ssh" / "config").read_text()
    assert "Host node01\n    HostName 198.18.0.101\n" in config
    assert f"IdentityFile {env.state_dir / 'ssh' / 'id_ed25519'}" in config


def test_exec_command_timeout_reports_the_slow_node(env: Env, fake_ssh: Path) -> None:
    request = ExecRequest("node01,node03", "if [ $NODE = node03 ]; then sleep 5; fi; echo done", command_timeout=0.5)
    report = exec_command(env, request)
    by_node = {r.node: r for r in report.results}
    assert by_node["node01"].ok
    assert by_node["node03"].error == "timed out: after 0.5 s"


def test_cli_prints_folded_output_escaped_and_exits_1(
    env: Env, capsys: pytest.CaptureFixture[str], fake_ssh: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "exec", "@compute", "--", "printf 'up\\033[2J\\n'"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "---------------\nnode[01,03]\n---------------\nup?[2J\n"
    assert "node02" in captured.err and "unreachable" in captured.err and "No route to host" in captured.err


def test_cli_json_has_each_nodes_output_exit_code_or_error(
    env: Env, capsys: pytest.CaptureFixture[str], fake_ssh: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "exec", "--json", "node[01-02]", "--", "echo", "$NODE"])
    assert exit_info.value.code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["failed"] == "node02"
    assert data["results"]["node01"] == {"output": "node01", "stderr": "", "exit_code": 0, "error": None}
    assert data["results"]["node02"]["exit_code"] is None
    assert data["results"]["node02"]["error"].startswith("unreachable: ")


def test_copy_goes_through_clustershell_scp(env: Env, fake_ssh: Path, tmp_path: Path) -> None:
    source = tmp_path / "motd"
    source.write_text("hi\n")
    report = copy_files(env, CopyRequest("node01", source, "/etc/motd", fanout=2))
    assert report.ok
    assert report.command == f"copy {source} -> /etc/motd"


def test_limits_default_to_clush_values() -> None:
    assert Limits() == Limits(fanout=64, connect_timeout=10.0, command_timeout=0.0)
    assert ExecRequest("x", "y").fanout == 64


# ---------------------------------------------------------------------------------------------------- groups


def test_groups_come_from_the_database(env: Env) -> None:
    groups = show_groups(env, ShowGroups()).groups
    assert groups["compute"] == ["node01", "node02", "node03"]
    assert groups["heads"] == ["head1", "head2"]
    assert groups["image-oscarimage"] == ["node01", "node02", "node03"]
    assert groups["image-serverimage"] == ["head1", "head2"]
    assert set(show_groups(env, ShowGroups(node="head1")).groups) == {"heads", "image-serverimage"}


def test_unknown_group_or_node_in_groups_is_named(env: Env) -> None:
    with pytest.raises(FieldNotFound) as caught:
        show_groups(env, ShowGroups(group="@rack1"))
    assert caught.value.field == "group"
    with pytest.raises(FieldNotFound):
        show_groups(env, ShowGroups(node="node99"))


def test_groups_upcalls_print_what_clustershell_reads(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(env.state_dir)
    outputs = []
    for argv in (["map", "compute"], ["list"], ["all"], ["reverse", "node01"]):
        with pytest.raises(SystemExit) as exit_info:
            run(["--state-dir", state, "groups", *argv])
        assert exit_info.value.code == 0
        outputs.append(capsys.readouterr().out)
    assert outputs == [
        "node[01-03]\n",
        "compute\nheads\nimage-oscarimage\nimage-serverimage\n",
        "head[1-2],node[01-03]\n",
        "compute\nimage-oscarimage\n",
    ]
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "groups", "map", "nope"])
    assert exit_info.value.code == 2


def test_the_clustershell_process_stays_small() -> None:
    """ClusterShell forks once per node from the process it runs in: that one must not load haoscar's heavy parts."""
    code = (
        "import sys, haoscar.provision.fanout_run; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('haoscar', 'sqlalchemy', 'pydantic', 'typer', 'rich')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['haoscar', 'haoscar.provision', 'haoscar.provision.fanout_run']"
