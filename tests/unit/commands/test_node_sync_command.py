"""``haoscar node sync`` without a network: bad input runs nothing and names the field (exit 2 from the CLI), and
with stand-ins for ClusterShell's runs, a refused node, a down node and a synced one are told apart, only the synced
one gets its version recorded (``node list`` shows it), a dry run changes nothing and lists the changes, and a node
whose cluster state could not be restored is not called done. ClusterShell's real exec worker (``run_local``) is
checked on its own."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import select

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.node_sync import NodeSyncRequest, Runners, installed_files, node_sync
from haoscar.commands.nodes import ListNodes, node_list
from haoscar.db.models import Image, Node, Setting
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision import fanout
from haoscar.provision import node_sync as ns
from haoscar.provision.images import ImageStore
from haoscar.provision.install_plan import SETTING_NODE_FILES, files_tar
from haoscar.provision.install_progress import record_done, record_progress
from haoscar.provision.node_sync_rules import REFUSED
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()
SSH_DOWN = "ssh: connect to host 198.18.0.103 port 22: No route to host"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    spec, problems = check_text(LAB.replace("count: 2", "count: 3"), "lab.yaml")
    assert spec is not None, problems
    env = Env(state_dir=tmp_path / "state")
    apply_spec(env.database, spec)
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("version 1\n")
    store = ImageStore(env.state_dir)
    store.import_tree("oscarimage", tree)
    (tree / "etc/motd").write_text("version 2, longer\n")
    store.import_tree("oscarimage", tree)
    yield env
    env.close()


def _never(*_args: object, **_kwargs: object) -> dict[str, fanout.Outcome]:
    raise AssertionError("nothing may run on bad input")


NEVER = Runners(shell=_never, copy=_never, local=_never, restore=_never)  # type: ignore[arg-type]


class Nodes:
    """Stand-ins for the runs: node01 syncs, node02 holds the marker, node03 is down; records what ran."""

    def __init__(self, restore_fails: bool = False) -> None:
        self.commands: list[tuple[str, list[str]]] = []
        self.restored: list[str] = []
        self.restore_fails = restore_fails

    def shell(self, nodes: list[str], command: str, _l: fanout.Limits, _c: Path) -> dict[str, fanout.Outcome]:
        self.commands.append((command, nodes))
        answers = {
            "node01": fanout.Outcome(["another-kernel", ns.MOUNTS, "/", "/proc", "/home", "/scratch"], rc=0),
            "node02": fanout.Outcome(
                ["another-kernel", ns.MOUNTS, "/", REFUSED, "lab host: its /boot is the machine's"], rc=0
            ),
            "node03": fanout.Outcome([], [SSH_DOWN], rc=255),
        }
        if command == ns.PROBE_COMMAND:
            return {node: answers[node] for node in nodes}
        return {node: fanout.Outcome(rc=0) for node in nodes}

    def local(self, nodes: list[str], command: str, _l: fanout.Limits, _c: Path) -> dict[str, fanout.Outcome]:
        self.commands.append((command, nodes))
        return {node: fanout.Outcome([">f.st...... etc/motd", "*deleting   etc/old"], rc=0) for node in nodes}

    def restore(self, _env: Env, targets: dict[str, str], _l: fanout.Limits, _r: object) -> dict[str, str | None]:
        self.restored += list(targets)
        return {node: ("useradd failed" if self.restore_fails else None) for node in targets}

    def runners(self) -> Runners:
        return Runners(shell=self.shell, copy=_never, local=self.local, restore=self.restore)


def _versions(env: Env) -> dict[str, int | None]:
    return {row.name: row.image_version for row in node_list(env, ListNodes("node[01-03]")).rows}


# ------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (NodeSyncRequest("@nope"), "nodes", "unknown group @nope"),
        (NodeSyncRequest("node09"), "nodes", "unknown node node09"),
        (NodeSyncRequest("node01", image="nope"), "image", "'nope' is not the image of every node"),
        (NodeSyncRequest("node01", image="oscarimage:9"), "image", "image 'oscarimage' has no version 9"),
        (NodeSyncRequest("node01", image="a:b:c"), "image", "'a:b:c' is not NAME or NAME:VERSION"),
        (NodeSyncRequest("head1"), "nodes", "head1: a head is never synced from an image"),
        (NodeSyncRequest("@*"), "nodes", "head[1-2]: a head is never synced"),
        (NodeSyncRequest("node01", fanout=0), "fanout", "give 1 to 4096"),
        (NodeSyncRequest("node01", connect_timeout=0), "connect_timeout", "above 0"),
    ],
)
def test_bad_input_names_the_field_and_runs_nothing(
    env: Env, request_: NodeSyncRequest, field: str, words: str
) -> None:
    with pytest.raises(FieldError) as caught:
        node_sync(env, request_, NEVER)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert _versions(env) == {"node01": None, "node02": None, "node03": None}


def test_an_image_missing_from_the_store_is_named(env: Env) -> None:
    with env.database.session() as session:
        node = session.scalars(select(Node).where(Node.name == "node01")).one()
        node.image_id = session.scalars(select(Image.id).where(Image.name == "serverimage")).one()
    with pytest.raises(FieldNotFound) as caught:
        node_sync(env, NodeSyncRequest("node01"), NEVER)
    assert "unknown image 'serverimage'; the images are oscarimage" in str(caught.value)


def test_unknown_things_are_not_found_errors(env: Env) -> None:
    for request in (NodeSyncRequest("node09"), NodeSyncRequest("node01", image="oscarimage:9")):
        with pytest.raises(FieldNotFound):
            node_sync(env, request, NEVER)


def test_cli_bad_input_exits_2_naming_the_option(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    for args, said in (
        (["node01", "--image", "oscarimage:7"], "--image: image 'oscarimage' has no version 7"),
        (["@rack9", "--dry-run"], "NODESET: unknown group @rack9"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run(["--state-dir", str(env.state_dir), "node", "sync", *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------- running


def test_synced_refused_and_down_nodes_are_told_apart_and_only_the_synced_one_is_recorded(env: Env) -> None:
    nodes = Nodes()
    report = node_sync(env, NodeSyncRequest("@compute"), nodes.runners())
    by_node = {r.node: r for r in report.results}
    assert by_node["node01"].verdict.status == "synced"
    assert (by_node["node01"].image, by_node["node01"].version) == ("oscarimage", 2)
    assert by_node["node01"].verdict.changes.counts() == {"changed": 1, "new": 0, "deleted": 1}
    assert by_node["node02"].verdict.status == "refused"
    assert by_node["node02"].verdict.reason == "/etc/haoscar/no-image-sync: lab host: its /boot is the machine's"
    assert by_node["node03"].verdict.status == "unreachable"
    assert "No route to host" in by_node["node03"].verdict.reason
    assert report.exit_status == 1 and report.failed == ["node02", "node03"]
    # rsync ran for node01 only, its cluster state was pushed again, and only it has a version.
    rsyncs = [(command, nodes_) for command, nodes_ in nodes.commands if command.startswith("rsync ")]
    assert [nodes_ for _command, nodes_ in rsyncs] == [["node01"]]
    # Each node's filter file holds its own mount points; the command names it through ClusterShell's %h.
    assert f"--filter=merge {env.state_dir}/node-sync/%h.filter" in rsyncs[0][0]
    assert "- /scratch\n" in (env.state_dir / "node-sync" / "node01.filter").read_text()
    assert not (env.state_dir / "node-sync" / "node02.filter").exists()
    assert nodes.restored == ["node01"]
    assert _versions(env) == {"node01": 2, "node02": None, "node03": None}


def test_an_explicit_version_is_synced_and_recorded(env: Env) -> None:
    nodes = Nodes()
    report = node_sync(env, NodeSyncRequest("node01", image="oscarimage:1"), nodes.runners())
    assert report.exit_status == 0
    rsync = next(command for command, _n in nodes.commands if command.startswith("rsync "))
    assert "/images/oscarimage/versions/1/root/ %h:/" in rsync
    assert _versions(env)["node01"] == 1


def test_a_dry_run_lists_the_changes_and_changes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = Nodes()
    report = node_sync(env, NodeSyncRequest("node01", dry_run=True), nodes.runners())
    assert report.results[0].verdict.status == "would sync"
    rsync = next(command for command, _n in nodes.commands if command.startswith("rsync "))
    assert "--dry-run" in rsync
    assert nodes.restored == [] and all(command != ns.RELOAD_COMMAND for command, _n in nodes.commands)
    assert _versions(env)["node01"] is None


def test_a_node_whose_cluster_state_failed_is_not_called_done(env: Env) -> None:
    report = node_sync(env, NodeSyncRequest("node01"), Nodes(restore_fails=True).runners())
    assert report.results[0].verdict.status == "failed"
    assert report.results[0].verdict.reason == "files synced; cluster sync: useradd failed"
    assert report.exit_status == 1
    assert _versions(env)["node01"] is None


def test_cli_dry_run_prints_the_paths_and_json_has_the_counts(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = Nodes()
    monkeypatch.setattr("haoscar.commands.node_sync.Runners", nodes.runners)
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "node", "sync", "node01", "--dry-run"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "node01: 1 changed, 0 new, 1 deleted" in out
    assert "~ /etc/motd" in out and "- /etc/old" in out
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "node", "sync", "@compute", "--json"])
    assert exit_info.value.code == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert results["node01"]["status"] == "synced" and results["node01"]["version"] == 2
    assert results["node01"]["paths"] == {"changed": ["/etc/motd"], "new": [], "deleted": ["/etc/old"]}
    assert results["node02"]["status"] == "refused" and results["node03"]["status"] == "unreachable"
    with pytest.raises(SystemExit):
        run(["--state-dir", str(env.state_dir), "node", "list", "--json"])
    listed = {row["name"]: row["image_version"] for row in json.loads(capsys.readouterr().out)}
    assert (listed["node01"], listed["node02"]) == (2, None)


def test_node_list_shows_the_version_the_installer_reported(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    mac = "52:54:00:00:00:01"
    run_args = ["--state-dir", str(env.state_dir)]
    with pytest.raises(SystemExit) as exit_info:
        run([*run_args, "node", "set", "node02", "--mac", mac])
    assert exit_info.value.code == 0
    record_progress(env.database, env.state_dir, mac, "dhcp", 0)
    assert record_done(env.database, env.state_dir, mac, 30.0, image_version=2) == "node02"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run([*run_args, "node", "list", "node[01-02]"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    header = lines[1]
    version = header.index("version")
    assert {line[0]: line[version] for line in lines[2:]} == {"node01": "-", "node02": "2"}


def test_changing_a_nodes_image_forgets_its_version(env: Env) -> None:
    node_sync(env, NodeSyncRequest("node01"), Nodes().runners())
    ImageStore(env.state_dir).import_tree("otherimage", env.state_dir / "images/oscarimage/versions/1/root")
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(env.state_dir), "node", "set", "node01", "--image", "otherimage"])
    assert exit_info.value.code == 0
    assert _versions(env)["node01"] is None


def test_clustershell_runs_a_local_command_per_node(tmp_path: Path) -> None:
    outcomes = fanout.run_local(["a1", "a2"], "echo node %h; exit 3", fanout.Limits(), tmp_path / "unused")
    assert {node: (o.stdout, o.rc) for node, o in outcomes.items()} == {
        "a1": (["node a1"], 3),
        "a2": (["node a2"], 3),
    }


def test_files_the_installer_put_on_every_node_are_kept(env: Env) -> None:
    unit = "[Unit]\nDescription=x\n[Service]\nExecStart=/usr/local/sbin/haoscar-nfs-watch /home\n"
    unit += "[Install]\nWantedBy=multi-user.target\n"
    files = {
        "/usr/local/sbin/haoscar-nfs-watch": ["#!/bin/sh\n", 0o755],
        "/etc/x/haoscar-nfs-watch.service": [unit, 0o644],
    }
    with env.database.session() as session:
        session.merge(Setting(key=SETTING_NODE_FILES, value=files))  # spec apply may have set it
    # The same paths the installer's tar holds (install_plan.files_tar), the enabling link included.
    with tarfile.open(fileobj=io.BytesIO(files_tar(files))) as tar:
        assert sorted(installed_files(env)) == sorted("/" + name for name in tar.getnames())
    node_sync(env, NodeSyncRequest("node01"), Nodes().runners())
    rules = (env.state_dir / "node-sync" / "node01.filter").read_text().splitlines()
    for path in installed_files(env):
        assert f"- {path}" in rules
    assert "- /etc/systemd/system/multi-user.target.wants/haoscar-nfs-watch.service" in rules
