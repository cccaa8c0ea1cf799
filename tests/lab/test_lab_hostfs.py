"""A lab host's /etc, /usr, /var/lib, /root... are copy-on-write: what it writes there stays in that host."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from haoscar.lab.defaults import default_spec
from haoscar.lab.hostfs import NO_IMAGE_SYNC_TEXT, cow_root
from haoscar.lab.lab import Lab
from haoscar.scenarios.lab_fixtures import MakeLab, unique_lab_name


def _files(tag: str) -> list[str]:
    return [f"/usr/local/bin/{tag}", f"/var/lib/dpkg/{tag}", f"/root/{tag}", f"/var/log/{tag}", f"/opt/{tag}"]


def _write_all(lab: Lab, host: str, tag: str) -> None:
    script = f"echo '{tag}:x:4242:4242::/home/{tag}:/bin/sh' >> /etc/passwd && mkdir -p /usr/local/bin"
    for path in _files(tag):
        script += f" && echo {tag} > {path}"
    lab.exec(host, ["sh", "-c", script])


def _seen_in(lab: Lab, host: str, tag: str) -> list[str]:
    """Which of the written things ``host`` sees."""
    seen = []
    if tag in lab.exec(host, ["cat", "/etc/passwd"]).stdout:
        seen.append("/etc/passwd")
    for path in _files(tag):
        if lab.exec(host, ["cat", path], check=False).stdout.strip() == tag:
            seen.append(path)
    return seen


def _on_machine(tag: str) -> list[str]:
    seen = ["/etc/passwd"] if tag in Path("/etc/passwd").read_text() else []
    return seen + [p for p in _files(tag) if Path(p).exists()]


def test_writes_stay_in_their_host_and_go_with_the_lab(make_lab: MakeLab) -> None:
    lab = make_lab()
    tag = f"labfs{uuid.uuid4().hex[:10]}"
    layers = cow_root(lab.dir, lab.name)
    _write_all(lab, "node01", tag)

    assert _seen_in(lab, "node01", tag) == ["/etc/passwd", *_files(tag)]
    assert _on_machine(tag) == []
    assert _seen_in(lab, "node02", tag) == []
    assert (layers / "node01/usr/upper/local/bin" / tag).read_text() == f"{tag}\n"

    lab.crash("node01")
    lab.restore("node01")  # the layers are the host's disk: a reboot keeps them
    assert _seen_in(lab, "node01", tag) == ["/etc/passwd", *_files(tag)]

    lab.down()
    assert not layers.exists()
    assert _on_machine(tag) == []


def test_private_dirs_stay_private_on_top_of_the_overlays(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.exec("head1", ["sh", "-c", "echo mine > /etc/haoscar/probe && echo state > /var/lib/haoscar/probe"])
    tree = lab.host_dir("head1")
    assert (tree / "etc/haoscar/probe").read_text() == "mine\n"
    assert (tree / "var/lib/haoscar/probe").read_text() == "state\n"
    assert not (cow_root(lab.dir, lab.name) / "head1/etc/upper/haoscar").exists()
    assert not Path("/etc/haoscar/probe").exists()
    marker = lab.exec("node02", ["cat", "/etc/haoscar/no-image-sync"]).stdout
    assert marker == NO_IMAGE_SYNC_TEXT
    assert "an image sync onto / would change the machine" in marker


def test_a_state_dir_under_var_lib_works() -> None:
    # The default state directory (/var/lib/haoscar) lies inside the overlaid /var/lib: the layers must not.
    state = Path(tempfile.mkdtemp(prefix="haoscar-labfs-", dir="/var/lib"))
    lab = None
    try:
        lab = Lab.up(default_spec(), unique_lab_name("v"), state)
        lab.exec("node01", ["sh", "-c", "echo kept > /var/lib/haoscar/probe && echo cow > /var/lib/probe-cow"])
        assert (lab.host_dir("node01") / "var/lib/haoscar/probe").read_text() == "kept\n"
        assert not (state / "probe-cow").exists() and not Path("/var/lib/probe-cow").exists()
        assert lab.exec("node01", ["cat", "/var/lib/probe-cow"]).stdout == "cow\n"
    finally:
        if lab is not None:
            lab.down()
        shutil.rmtree(state, ignore_errors=True)


def _dev(lab: Lab, host: str, path: str) -> str:
    """The device number and the file system type of ``path`` in ``host``."""
    return lab.exec(host, ["sh", "-c", f"echo $(stat -c %d {path}) $(stat -f -c %T {path})"]).stdout.strip()


def test_each_head_has_home_on_a_file_system_of_its_own(make_lab: MakeLab) -> None:
    """Two real heads have two disks: the heads' /home are two file systems (so an NFS handle of one is stale on
    the other), a compute node's is not one of them, a crash keeps the head's files, and `lab down` unmounts."""
    lab = make_lab()
    heads = [_dev(lab, h, "/home") for h in ("head1", "head2")]
    assert heads[0] != heads[1]
    assert [h.split()[1] for h in heads] == ["tmpfs", "tmpfs"]
    assert _dev(lab, "node01", "/home") not in heads
    lab.exec("head1", ["sh", "-c", "echo kept > /home/marker"])
    assert (lab.host_dir("head1") / "home/marker").read_text() == "kept\n"  # a test still reaches it by path
    lab.crash("head1")
    lab.restore("head1")
    assert lab.exec("head1", ["cat", "/home/marker"]).stdout == "kept\n"
    lab_dir = str(lab.dir.resolve())
    lab.down()
    assert [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if lab_dir in line] == []
