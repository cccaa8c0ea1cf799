"""``haoscar image fetch`` run inside the head host against a golden client running sshd in another lab host."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sshd_helper import lab_sshd

from haoscar.lab.lab import Lab
from haoscar.provision.sshkeys import ensure_identity
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD, GOLDEN = "head1", "node01"
BIG = 300_000


def _golden_tree(root: Path) -> None:
    """A small root tree with what an image must carry faithfully, plus what a fetch must leave out."""
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/secret").write_text("key\n")
    (root / "etc/ssh/secret").chmod(0o600)
    (root / "etc/motd").write_text("welcome\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/su-ish").write_bytes(b"#!/bin/sh\n")
    (root / "usr/bin/su-ish").chmod(0o4755)
    (root / "usr/lib").mkdir()
    (root / "usr/lib/big.so").write_bytes(os.urandom(BIG))
    os.link(root / "usr/lib/big.so", root / "usr/lib/big-alias.so")
    (root / "usr/lib/libx.so").symlink_to("big.so")
    (root / "opt/alice").mkdir(parents=True)
    (root / "opt/alice/notes").write_text("mine\n")
    os.chown(root / "opt/alice/notes", 1234, 2345)
    os.chown(root / "opt/alice", 1234, 2345)
    # Users' homes never enter an image (image_secrets.SECRET_EXCLUDES); /home itself stays, a mount point.
    (root / "home/bob").mkdir(parents=True)
    (root / "home/bob/notes").write_text("bob's\n")
    os.lchown(root / "usr/lib/libx.so", 1234, 2345)
    (root / "var/empty").mkdir(parents=True)
    (root / "var/cache/pkgs").mkdir(parents=True)
    (root / "var/cache/pkgs/old.deb").write_text("cached\n")
    os.setxattr(root / "etc/motd", "user.haoscar", b"golden")
    for pseudo in ("proc", "sys", "dev", "run", "tmp"):
        (root / pseudo).mkdir()
        (root / pseudo / "volatile").write_text("not in any image\n")
    (root / "tmp").chmod(0o1777)


def _describe(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        xattrs = {} if path.is_symlink() else {k: os.getxattr(path, k) for k in os.listxattr(path)}
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, link, content, xattrs)
    return out


def _fetch(lab: Lab, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", "image", "fetch", *args]
    return lab.exec(HEAD, argv, timeout=timeout, check=False)


def test_fetch_copies_a_golden_client_and_second_fetch_stores_only_changes(make_lab: MakeLab) -> None:
    lab = make_lab()
    head_state = lab.host_dir(HEAD) / "var/lib/haoscar"
    golden = lab.host_dir(GOLDEN) / "srv/golden"
    _golden_tree(golden)
    (lab.host_dir(HEAD) / "etc/haoscar/serverimage.exclude").write_text("# package caches\n/var/cache/*\n")
    identity = ensure_identity(head_state)

    with lab_sshd(lab, GOLDEN, [identity.public_key]) as address:
        common = ["--golden-client", address, "--source-root", "/srv/golden", "--json"]
        first = _fetch(
            lab,
            "serverimage",
            *common,
            "--ip-assignment",
            "static",
            "--post-install",
            "beep",
            "--exclude-file",
            "/etc/haoscar/serverimage.exclude",
        )
        assert first.returncode == 0, first.stderr
        v1 = json.loads(first.stdout)

        image = head_state / "images/serverimage/versions/1/root"
        expected = _describe(golden)
        for pseudo in ("proc", "sys", "dev", "run", "tmp"):
            del expected[f"{pseudo}/volatile"]  # the directory stays as a mount point, the contents do not
        del expected["var/cache/pkgs"], expected["var/cache/pkgs/old.deb"]  # the per-image exclude file
        del expected["home/bob"], expected["home/bob/notes"]  # homes: SECRET_EXCLUDES
        assert _describe(image) == expected
        assert (image / "usr/lib/big.so").stat().st_ino == (image / "usr/lib/big-alias.so").stat().st_ino
        assert (v1["version"], v1["ip_assignment"], v1["post_install"]) == (1, "static", "beep")

        (golden / "etc/motd").write_text("welcome to v2\n")
        (golden / "etc/issue").write_text("haoscar\n")
        (golden / "opt/alice/notes").unlink()
        second = _fetch(lab, "serverimage", *common)
        assert second.returncode == 0, second.stderr
        v2 = json.loads(second.stdout)

    new_image = head_state / "images/serverimage/versions/2/root"
    assert (image / "usr/lib/big.so").stat().st_ino == (new_image / "usr/lib/big.so").stat().st_ino
    assert (image / "etc/motd").read_text() == "welcome\n"
    assert (new_image / "etc/motd").read_text() == "welcome to v2\n"
    # The per-image exclude file and the Fetch Image settings were remembered from the first fetch.
    assert not (new_image / "var/cache/pkgs/old.deb").exists()
    assert (v2["parent"], v2["ip_assignment"], v2["post_install"]) == (1, "static", "beep")
    assert v2["new_bytes"] == len("welcome to v2\n") + len("haoscar\n")
    du = subprocess.run(
        ["du", "-s", "--block-size=1", str(image), str(new_image)], capture_output=True, text=True, check=True
    )
    first_du, second_du = (int(line.split()[0]) for line in du.stdout.splitlines())
    # Directories are never shared (a few KiB each); the big file is stored once for both versions.
    assert first_du > BIG and second_du < BIG // 2, du.stdout

    diff = lab.exec(
        HEAD,
        [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", "image", "diff", "serverimage", "--json"],
    )
    assert json.loads(diff.stdout) == {
        "added": ["etc/issue"],
        "removed": ["opt/alice/notes"],
        "changed": ["etc/motd"],
    }


def test_unreachable_golden_client_is_a_clear_error_and_stores_nothing(make_lab: MakeLab) -> None:
    lab = make_lab()
    images = lab.host_dir(HEAD) / "var/lib/haoscar/images"
    started = time.monotonic()
    # An address on the lab's private network where no host answers: ARP fails, ssh gives up after 3 s.
    result = _fetch(lab, "serverimage", "--golden-client", "198.18.0.77", "--post-install", "reboot", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert "cannot reach golden client 198.18.0.77" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert elapsed < 15
    assert not images.exists() or not any(images.iterdir())
