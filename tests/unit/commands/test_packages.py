"""``haoscar pkg``: bad input changes nothing and reaches no node (exit 2, the field named); the node step's flow
and each node's end (installed / failed with apt's reason / unreachable) with the parallel shell replaced by a
recorder (no command of a node's may run on this machine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ClusterShell.NodeSet import NodeSet

from haoscar.cli.main import run
from haoscar.commands import packages as pkg
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.exec import CopyRequest, ExecReport, ExecRequest, NodeResult
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision.images import ImageStore
from haoscar.spec import check_text

LAB = (resources.files("haoscar") / "data" / "lab.yaml").read_text()
STATUS = "Package: hello\nStatus: install ok installed\n\nPackage: bash\nStatus: install ok installed\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    spec, problems = check_text(LAB.replace("count: 2", "count: 3"), "lab.yaml")
    assert spec is not None, problems
    env = Env(state_dir=tmp_path / "state")
    apply_spec(env.database, spec)
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text(STATUS)
    ImageStore(env.state_dir).import_tree("oscarimage", tree)
    yield env
    env.close()


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The parallel shell as a recorder: node02 is down, node03's apt fails, the rest succeed."""
    calls: list[tuple[str, str]] = []

    def result(node: str, what: str) -> NodeResult:
        if node == "node02":
            return NodeResult(node, "", "", None, "unreachable: ssh: connect to host 198.18.0.102: No route to host")
        if node == "node03" and "apt-get" in what:
            return NodeResult(node, "", "E: Sub-process /usr/bin/dpkg returned an error code (1)", 1, None)
        return NodeResult(node, "", "", 0, None)

    def exec_command(_env: Env, request: ExecRequest) -> ExecReport:
        calls.append((request.nodes, request.command))
        nodes = list(NodeSet(request.nodes))
        return ExecReport(request.nodes, request.command, [result(n, request.command) for n in nodes], 0.1)

    def copy_files(_env: Env, request: CopyRequest) -> ExecReport:
        calls.append((request.nodes, f"copy {request.source} {request.dest}"))
        nodes = list(NodeSet(request.nodes))
        return ExecReport(request.nodes, "copy", [result(n, "copy") for n in nodes], 0.1)

    monkeypatch.setattr(pkg, "exec_command", exec_command)
    monkeypatch.setattr(pkg, "copy_files", copy_files)
    return calls


def _versions(env: Env) -> list[int]:
    return ImageStore(env.state_dir).versions("oscarimage")


@pytest.mark.parametrize(
    ("request_", "field", "text"),
    [
        (pkg.PackagesRequest([], "@compute"), "packages", "is empty"),
        (pkg.PackagesRequest(["Hello"], "@compute"), "packages", "'Hello' is not a Debian package name"),
        (pkg.PackagesRequest(["hello"], "@rack9"), "nodes", "unknown group @rack9"),
        (pkg.PackagesRequest(["hello"], "node99"), "nodes", "unknown node node99"),
        (pkg.PackagesRequest(["hello"], ""), "nodes", "is empty"),
        (pkg.PackagesRequest(["hello"], "@compute", image="nope"), "image", "'nope' is not in the store"),
        (pkg.PackagesRequest(["hello"], "@compute", image_only=True, nodes_only=True), "nodes_only", "exclude"),
        (pkg.PackagesRequest(["hello"], "@compute", fanout=0), "fanout", "give 1 to"),
    ],
)
def test_bad_install_requests_change_nothing(
    env: Env, shell: list[tuple[str, str]], request_: pkg.PackagesRequest, field: str, text: str
) -> None:
    with pytest.raises(FieldError) as error:
        pkg.pkg_install(env, request_)
    assert error.value.field == field and text in str(error.value), str(error.value)
    assert shell == [] and _versions(env) == [1]


def test_bad_remove_requests_change_nothing(env: Env, shell: list[tuple[str, str]]) -> None:
    with pytest.raises(FieldError) as error:
        pkg.pkg_remove(env, pkg.PackagesRequest(["sl"], "@compute"))
    assert error.value.field == "packages" and "sl: not installed in image oscarimage version 1" in str(error.value)
    with pytest.raises(FieldError) as error:
        pkg.pkg_remove(env, pkg.PackagesRequest(["openssh-server"], "@compute"))
    assert "a node needs it" in str(error.value)
    with pytest.raises(FieldNotFound):
        pkg.pkg_remove(env, pkg.PackagesRequest(["hello"], "@nope"))
    assert shell == [] and _versions(env) == [1]


def test_nodes_of_several_images_need_the_image_named(env: Env, shell: list[tuple[str, str]]) -> None:
    with pytest.raises(FieldError) as error:
        pkg.pkg_install(env, pkg.PackagesRequest(["hello"], "@heads,node01"))
    assert error.value.field == "image" and "they use oscarimage, serverimage" in str(error.value)
    assert shell == [] and _versions(env) == [1]


def test_nodes_only_without_kept_files_is_refused(env: Env, shell: list[tuple[str, str]]) -> None:
    with pytest.raises(FieldError) as error:
        pkg.pkg_install(env, pkg.PackagesRequest(["sl"], "@compute", nodes_only=True))
    assert error.value.field == "nodes_only" and "holds the .deb files of sl" in str(error.value)
    assert shell == []


def _kept(env: Env, debs: list[str]) -> Path:
    """Version 1 as a ``pkg install hello`` would have left it: its metadata says so, its files are beside it."""
    store = ImageStore(env.state_dir)
    version_dir = store.version_root("oscarimage", 1).parent
    meta: dict[str, Any] = json.loads((version_dir / "meta.json").read_text())
    meta["details"] = {"installed": "hello", "debs": " ".join(debs)}
    (version_dir / "meta.json").write_text(json.dumps(meta))
    (version_dir / "debs").mkdir()
    for name in debs:
        (version_dir / "debs" / name).write_text("")
    return version_dir / "debs"


def test_install_on_nodes_reports_each_end_and_skips_the_unreachable(env: Env, shell: list[tuple[str, str]]) -> None:
    debs = _kept(env, ["hello_2.10-3_amd64.deb"])
    report = pkg.pkg_install(env, pkg.PackagesRequest(["hello"], "@compute"))
    # hello is in the image already: no new version, the kept files of version 1 go to the nodes.
    assert (report.version, report.new_version, report.debs) == (1, False, ["hello_2.10-3_amd64.deb"])
    assert [(r.node, r.state) for r in report.results] == [
        ("node01", "installed"),
        ("node02", "unreachable"),
        ("node03", "failed"),
    ]
    assert "No route to host" in report.results[1].reason
    assert report.results[2].reason == "E: Sub-process /usr/bin/dpkg returned an error code (1)"
    assert report.exit_status == 1
    prepare, copy, install = shell
    assert prepare[0] == "node[01-03]" and "rm -rf /var/lib/haoscar/pkg/oscarimage-1" in prepare[1]
    assert copy == ("node[01,03]", f"copy {debs} /var/lib/haoscar/pkg/oscarimage-1")  # not the down node
    assert (
        install[0] == "node[01,03]" and "apt-get install -s" in install[1] and "./hello_2.10-3_amd64.deb" in install[1]
    )
    assert report.as_dict()["nodes"]["node02"]["state"] == "unreachable"


def test_cli_exit_codes(env: Env, shell: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    state = str(env.state_dir)
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "pkg", "install", "hello", "bad_name", "--nodes", "@compute"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "PKG: 'bad_name' is not a Debian package name" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "pkg", "remove", "hello", "--nodes", "@nope"])
    assert exit_info.value.code == 2
    assert "--nodes: unknown group @nope" in capsys.readouterr().err
    _kept(env, ["hello_2.10-3_amd64.deb"])
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "pkg", "install", "hello", "--nodes", "node01", "--json"])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == {"node01": {"state": "installed", "reason": ""}}
