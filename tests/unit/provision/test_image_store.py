"""The image store with local trees: versions, shared files, diff, rollback, delete, and what bad input leaves."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.errors import NotFound, UserError
from haoscar.provision.images import FetchRequest, ImageStore


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("golden\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_bytes(b"\x7fELF" + b"x" * 100_000)
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/lib").mkdir()
    (root / "usr/lib/big.so").write_bytes(b"y" * 200_000)
    return root


def _snapshot(path: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in path.rglob("*")} if path.exists() else {}


def test_second_version_stores_only_changes(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = ImageStore(tmp_path / "state")
    first = store.import_tree("compute", src, ip_assignment="dhcp", post_install="reboot")
    (src / "etc/hostname").write_text("golden2\n")
    (src / "usr/lib/new.so").write_bytes(b"z" * 5_000)
    (src / "usr/bin/tool").unlink()
    second = store.import_tree("compute", src)

    assert (first.version, second.version, second.parent) == (1, 2, 1)
    v1, v2 = store.version_root("compute", 1), store.version_root("compute", 2)
    assert os.stat(v1 / "usr/lib/big.so").st_ino == os.stat(v2 / "usr/lib/big.so").st_ino
    assert os.stat(v1 / "etc/hostname").st_ino != os.stat(v2 / "etc/hostname").st_ino
    assert (v1 / "etc/hostname").read_text() == "golden\n"
    assert second.new_bytes == len("golden2\n") + 5_000
    assert second.bytes == 200_000 + 5_000 + len("golden2\n")
    # Settings given once stay with the image.
    assert (second.ip_assignment, second.post_install) == ("dhcp", "reboot")
    assert store.current_root("compute") == v2

    diff = store.diff("compute")
    assert diff.added == ["usr/lib/new.so"]
    assert diff.removed == ["usr/bin/tool"]
    assert diff.changed == ["etc/hostname"]


def test_rollback_delete_and_in_use(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    users: list[str] = []
    store = ImageStore(tmp_path / "state", in_use=lambda _state, _name: users)
    store.import_tree("compute", src)
    (src / "etc/motd").write_text("hi\n")
    store.import_tree("compute", src)

    assert store.rollback("compute") == 1
    assert store.current_root("compute").name == "root"
    assert not (store.current_root("compute") / "etc/motd").exists()
    users.append("node001")
    with pytest.raises(UserError, match="node001"):
        store.delete("compute", 1)
    with pytest.raises(UserError, match="used by 1 node"):
        store.delete("compute")
    assert store.delete("compute", 2) == [2]
    assert store.versions("compute") == [1]
    # Version numbers are never reused, so a version number always names the same tree.
    assert store.import_tree("compute", src).version == 3
    users.clear()
    assert store.delete("compute") == [1, 3]
    assert store.names() == []
    with pytest.raises(NotFound, match="not in the store"):
        store.current_root("compute")


def test_failed_fetch_stores_nothing(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    state = tmp_path / "state"
    store = ImageStore(state)
    store.import_tree("serverimage", src, ip_assignment="static", post_install="beep")
    before = _snapshot(state / "images")
    # A loopback port nobody listens on: ssh is refused at once, no traffic leaves the machine.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = FetchRequest("serverimage", "127.0.0.1", ssh_port=port, ip_assignment="dhcp", post_install="shutdown")
    with pytest.raises(UserError, match=r"cannot reach golden client 127\.0\.0\.1"):
        store.fetch(request)
    with pytest.raises(UserError, match="cannot reach golden client"):
        store.fetch(FetchRequest("newimage", "127.0.0.1", ssh_port=port))
    assert _snapshot(state / "images") == before
    assert store.names() == ["serverimage"]
    assert store.show("serverimage").summary.ip_assignment == "static"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        run(list(argv))
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def test_cli_lists_shows_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "src")
    state = tmp_path / "state"
    base = ["--state-dir", str(state), "image"]

    code, out, err = _cli(capsys, *base, "import", "serverimage", str(src), "--post-install", "beep")
    assert code == 0, err
    listed = json.loads(_cli(capsys, *base, "list", "--json")[1])
    assert [(i["name"], i["current"], i["ip_assignment"], i["post_install"]) for i in listed] == [
        ("serverimage", 1, "static", "beep")
    ]
    shown = json.loads(_cli(capsys, *base, "show", "serverimage", "--json")[1])
    assert shown["root"].endswith("images/serverimage/versions/1/root")
    assert shown["version_details"][0]["files"] == 7  # etc, usr, usr/bin, usr/lib and three files
    table = _cli(capsys, *base, "list")[1]
    assert "serverimage" in table and "beep" in table

    before = _snapshot(state / "images")
    for argv, message in [
        (["show", "nosuch"], "not in the store"),
        (["import", "Bad_Name", str(src)], "not a valid image name"),
        (["import", "serverimage", str(src), "--ip-assignment", "bootp"], "static, dhcp"),
        (["import", "serverimage", str(src), "--post-install", "explode"], "beep, reboot, shutdown"),
        (["rollback", "serverimage"], "no version older"),
        (["build", "oscarimage", "--suite", "Bookworm!"], "not a Debian suite"),
        (["build", "oscarimage", "--packages", "vim,bad;pkg"], "not Debian package names: bad;pkg"),
        (["build", "oscarimage", "--ip-assignment", "bootp"], "static, dhcp"),
        (["delete", "serverimage", "--version", "7"], "has no version 7"),
        (["fetch", "serverimage", "--golden-client", "127.0.0.1", "--exclude-file", "/nonexistent"], "exclude file"),
    ]:
        code, out, err = _cli(capsys, *base, *argv)
        assert code == 2, (argv, out, err)
        assert message in " ".join(err.split()), (argv, err)
        assert "Traceback" not in err
    assert _snapshot(state / "images") == before


def test_progress_is_reported_and_two_images_compare(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = ImageStore(tmp_path / "state")
    seen: list[tuple[float, str]] = []
    store.import_tree("compute", src, progress=lambda percent, what: seen.append((percent, what)))
    assert seen[0][0] == 0 and seen[-1][0] == 100
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    (src / "etc/hostname").unlink()
    store.import_tree("login", src)
    diff = store.diff("compute", other="login")
    assert (diff.added, diff.removed, diff.changed) == ([], ["etc/hostname"], [])
    with pytest.raises(NotFound, match="not in the store"):
        store.diff("compute", other="nosuch")


def test_delete_asks_the_cluster_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from haoscar.commands.apply import apply_spec
    from haoscar.db.session import open_database
    from haoscar.lab.defaults import default_spec

    state = tmp_path / "state"
    db = open_database(state)
    apply_spec(db, default_spec())  # both heads use serverimage
    db.close()
    store = ImageStore(state)
    store.import_tree("serverimage", _tree(tmp_path / "src"))
    code, _, err = _cli(capsys, "--state-dir", str(state), "image", "delete", "serverimage")
    assert code == 2
    assert "used by 2 node(s) (head1, head2)" in " ".join(err.split())
    assert store.versions("serverimage") == [1]
