"""``haoscar pkg install|remove`` with the real debootstrap image and lab nodes running sshd with the cluster key.

The lab's heads have no route to the mirror, so (as an admin with an offline head would) the image step runs
where the mirror is reachable (the root namespace, ``--image-only``, against the same state directory) and the node
step inside head1 (``--nodes-only``, from the .deb files kept with the image version). Lab hosts are copy-on-write
for /usr and /var/lib (tests/lab/test_lab_hostfs.py), so dpkg on a node never changes this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from haoscar.scenarios.bench.exec_lab import exec_lab_spec, haoscar_in, lab_sshds, prepare_state
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.real_node import IMAGE, built_image_state

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NODES = ["node001", "node002", "node003"]  # exec_lab_spec(3): their image is "img"
DOWN = "node003"


def _here(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """haoscar in the root namespace: only the image step (chroot and the mirror), never a node."""
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)


def _image_from_cache(state: Path) -> None:
    """The cached real image as image ``img`` of ``state``: hard links (nothing here writes a stored file: a pkg
    version is made in a copy and every metadata file is replaced by rename)."""
    source = built_image_state() / "images" / IMAGE
    target = state / "images" / "img"
    (state / "images").mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(target)], check=True)
    settings = json.loads((target / "image.json").read_text())
    (target / "image.json").unlink()  # a link into the cache: a new file, not a change of it
    (target / "image.json").write_text(json.dumps({**settings, "name": "img"}))


def test_pkg_install_and_remove_in_the_image_and_on_the_nodes(make_lab: MakeLab, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, chroot)")
    assert not Path("/usr/bin/hello").exists(), "this machine has hello: the test could not tell the nodes' apart"
    spec = exec_lab_spec(len(NODES))
    state = tmp_path / "state"
    public_key = prepare_state(state, spec)
    _image_from_cache(state)
    images = state / "images/img/versions"
    before = sorted(p.name for p in images.iterdir())

    # A package that does not exist: exit 2, the field named, no new version, no node touched.
    bad = _here(state, "pkg", "install", "hello", "no-such-package-xyz", "--nodes", "@compute")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "PKG: no package no-such-package-xyz" in bad.stderr, bad.stderr
    assert sorted(p.name for p in images.iterdir()) == before

    # Step 1 (root namespace): a new version of the nodes' image with hello in its tree and its .deb kept.
    made = _here(state, "pkg", "install", "hello", "--nodes", "@compute", "--image-only", "--json")
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    new = report["version"]
    assert (report["image"], report["new_version"], report["nodes"]) == ("img", True, {})
    assert os.access(images / str(new) / "root/usr/bin/hello", os.X_OK)
    assert [name for name in report["debs"] if name.startswith("hello_")], report
    assert json.loads((state / "images/img/image.json").read_text())["packages"] == ["hello"]

    lab = make_lab(spec)
    # A head without a route to the mirror: the image step fails clearly, no version is made.
    offline = haoscar_in(lab, "head1", state, ["pkg", "install", "sl", "-w", "@compute", "--image-only"])
    assert offline.returncode == 2, offline.stdout + offline.stderr
    assert "cannot reach the mirror" in offline.stderr and "nothing was stored" in offline.stderr, offline.stderr
    assert sorted(p.name for p in images.iterdir()) == sorted([*before, str(new)])

    with lab_sshds(lab, NODES, [public_key]):
        lab.crash(DOWN)
        # Step 2 (inside head1, no mirror): the kept files onto the nodes; the down node reported, exit 1.
        done = haoscar_in(
            lab,
            "head1",
            state,
            ["pkg", "install", "hello", "-w", "@compute", "--nodes-only", "-t", "3", "--json"],
            timeout=300,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        nodes = json.loads(done.stdout)["nodes"]
        assert {n: nodes[n]["state"] for n in NODES} == {
            "node001": "installed",
            "node002": "installed",
            DOWN: "unreachable",
        }, nodes
        assert json.loads(done.stdout)["version"] == new
        for node in NODES[:2]:
            ran = lab.exec(node, ["hello"], check=False)
            assert (ran.returncode, ran.stdout) == (0, "Hello, world!\n"), ran.stderr
        assert not Path("/usr/bin/hello").exists()  # the nodes' /usr is theirs, not this machine's

        # pkg remove: a new image version without it (root namespace), then off the living nodes (head1).
        gone = _here(state, "pkg", "remove", "hello", "--nodes", "node[001-002]", "--image-only", "--json")
        assert gone.returncode == 0, gone.stderr
        newer = json.loads(gone.stdout)["version"]
        assert newer > new and not (images / str(newer) / "root/usr/bin/hello").exists()
        assert os.access(images / str(new) / "root/usr/bin/hello", os.X_OK)  # the older version kept as it was
        done = haoscar_in(lab, "head1", state, ["pkg", "remove", "hello", "-w", "node[001-002]", "--nodes-only"])
        assert done.returncode == 0, done.stdout + done.stderr
        for node in NODES[:2]:
            assert lab.exec(node, ["sh", "-c", "command -v hello || echo none"], check=False).stdout == "none\n"
    shutil.rmtree(state / "images", ignore_errors=True)
