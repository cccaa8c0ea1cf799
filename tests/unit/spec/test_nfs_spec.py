"""The ``nfs:`` section (docs/nfs.md): defaults, bad exports named by field with exit 2 and nothing changed through
``spec validate`` and ``spec apply``, and the exports joining file replication's trees."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from spec_cases import BASE, edit
from test_private_alias import with_alias

from haoscar.cli.main import run
from haoscar.replication.config import DEFAULT_TREES, trees_of
from haoscar.spec import check_text
from haoscar.spec.nfs_models import default_export_id

ALIASED = with_alias()
FAILBACK = "  failback: manual\n"


def with_service(text: str, *names: str) -> str:
    lines = "".join(f"    - {{name: {name}, kind: nfs-ganesha}}\n" for name in names)
    return edit(text, (FAILBACK, f"{FAILBACK}  services:\n{lines}"))


def with_nfs(nfs: str, text: str = ALIASED) -> str:
    return f"{text}\nnfs:\n{nfs}"


def problems_of(text: str) -> list[str]:
    spec, found = check_text(text)
    assert spec is None
    return [f"{p.path}: {p.message}" for p in found]


def test_by_default_home_is_exported_from_replicated_storage() -> None:
    spec, found = check_text(ALIASED)
    assert found == [] and spec is not None
    assert [e.path for e in spec.nfs.exports] == ["/home"]
    [home] = spec.nfs.exports
    assert (home.access, home.squash, spec.nfs.storage) == ("rw", "root", "replicated")
    assert home.effective_id == default_export_id("/home") == 2 + zlib.crc32(b"/home") % 65533


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("home", "nfs.exports[0].path: 'home' is not an absolute path; write e.g. /home"),
        ("/", "nfs.exports[0].path: '/' would export the head's whole root file system; export a tree such as /home"),
        ("/home/../etc", "nfs.exports[0].path: '/home/../etc' is not normalised; write it without . , .. or //"),
        ("/home//x", "nfs.exports[0].path: '/home//x' is not normalised; write it without . , .. or //"),
        ('/home/"x', "nfs.exports[0].path: '/home/\"x' holds a character an NFS-Ganesha config cannot quote"),
        ("/etc/haoscar", "nfs.exports[0].path: '/etc/haoscar' would export /etc, which holds the head's system, keys"),
        ("/var", "nfs.exports[0].path: '/var' would export /var/lib/haoscar, which holds the head's system, keys"),
    ],
)
def test_a_bad_export_path_is_named(path: str, message: str) -> None:
    [problem] = problems_of(with_nfs(f"  exports:\n    - path: '{path}'\n"))
    assert problem.startswith(message)


def test_exports_are_unique_with_ids_of_their_own_and_inside_the_replicated_roots() -> None:
    text = with_nfs(
        "  exports:\n    - path: /home\n    - path: /home/\n    - {path: /srv/a, export_id: 7}\n"
        "    - {path: /srv/b, export_id: 7}\n    - path: /opt/data\n",
        with_service(ALIASED, "nfs"),
    )
    assert problems_of(text) == [
        "nfs.exports[1].path: /home is exported twice (also entry 0)",
        "nfs.exports[3].export_id: Export_Id 7 is also /srv/a's; give one of them an export_id of its own",
        "nfs.exports[4].path: /opt/data is outside ha.replicate_roots (/home, /etc/haoscar, /var/lib/haoscar, /srv, "
        "/var/spool), so the standby would not have it; move it under one of them or add its tree to "
        "ha.replicate_roots",
    ]


def test_storage_settings_go_together() -> None:
    assert problems_of(with_nfs("  storage: external\n")) == [
        "nfs: storage: external needs server, the NAS address the compute nodes mount from"
    ]
    [problem] = problems_of(with_nfs("  recovery_dir: /srv/recovery\n"))
    assert "recovery_dir is only for storage: shared" in problem


def test_the_nfs_service_needs_the_private_alias_and_a_head_that_serves() -> None:
    [problem] = problems_of(with_service(BASE, "nfs"))
    assert problem.startswith("ha.services[0].kind: the NFS export follows the active head through the private alias")
    external = with_nfs("  storage: external\n  server: 198.18.0.250\n", with_service(ALIASED, "nfs"))
    assert problems_of(external) == [
        "ha.services[0].kind: nfs.storage is external: the NAS serves the exports, so the heads run no nfs-ganesha "
        "service"
    ]
    twice = with_service(ALIASED, "nfs", "nfs2")
    assert problems_of(twice) == ["ha.services[1].kind: a second nfs-ganesha service; a head runs one (first: 0)"]


def test_served_exports_join_the_replicated_trees_unless_a_tree_holds_them() -> None:
    exports = "  exports:\n    - path: /home\n    - path: /srv/data\n"
    spec, _ = check_text(with_nfs(exports, with_service(ALIASED, "nfs")))
    assert spec is not None
    trees = trees_of(spec, Path("/var/lib/haoscar"))
    paths = [str(t.path) for t in trees]
    assert "/home" in DEFAULT_TREES and paths == [*DEFAULT_TREES, "/srv/data"]  # /home is held already
    assert trees[-1].default  # created on both heads like haoscar's own trees
    shared, _ = check_text(with_nfs(f"  storage: shared\n{exports}", with_service(ALIASED, "nfs")))
    assert shared is not None and "/srv/data" not in [str(t.path) for t in trees_of(shared, Path("/var/lib/haoscar"))]
    # a spec whose heads serve no NFS replicates what it always did, and /opt/data is no error there
    unserved, _ = check_text(with_nfs("  exports:\n    - path: /opt/data\n"))
    assert unserved is not None and "/opt/data" not in [str(t.path) for t in trees_of(unserved, Path("/var/lib/h"))]


def test_bad_nfs_through_the_cli_exits_2_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(with_nfs("  exports:\n    - path: /home/../etc\n"))
    state = tmp_path / "state"
    for command in ("validate", "apply"):
        with pytest.raises(SystemExit) as exit_info:
            run(["--state-dir", str(state), "spec", command, str(spec_file)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "nfs.exports[0].path: '/home/../etc' is not normalised" in err and "Traceback" not in err
    assert not (state / "haoscar.db").exists()
    # over an applied spec: the database is left as it was
    spec_file.write_text(with_nfs("  exports:\n    - path: /home\n"))
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(state), "spec", "apply", str(spec_file)])
    assert exit_info.value.code == 0
    before = (state / "haoscar.db").read_bytes()
    spec_file.write_text(with_nfs("  exports:\n    - path: /home\n    - path: /home\n"))
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(state), "spec", "apply", str(spec_file)])
    assert exit_info.value.code == 2
    assert "nfs.exports[1].path: /home is exported twice" in capsys.readouterr().err
    assert (state / "haoscar.db").read_bytes() == before
