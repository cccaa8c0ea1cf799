"""Issue 10, finding 1: an image taken from a head never carries haoscar's secrets, homes or the database, and an
image holding a private key is never published.

The golden client is a lab host (node01, sshd) whose tree holds something at every path of the exclusion list
(``SECRET_EXCLUDES``), real ssh keys, the HA key, a database file and a shadow file with password hashes; the fetch
runs inside head1 with ``haoscar image fetch``, as an administrator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sshd_helper import lab_sshd

from haoscar.lab.lab import Lab
from haoscar.provision.image_secrets import SECRET_EXCLUDES, scan
from haoscar.provision.sshkeys import ensure_identity
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD, GOLDEN = "head1", "node01"
HASH = "$6$salt$Wq8yBgoMsEvmQW7kHqGfXz0YcI0r5e3vPq2y7oM6e0E2tZ7rGm7u3sFJdZ8K2l7Yj0pV5u1tq9kqMZs9C5Jc."


def haoscar(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar", *args]
    return lab.exec(HEAD, argv, timeout=120, check=False)


def keygen(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def head_tree(root: Path) -> list[str]:
    """A head's root file system in small: the paths (relative) that must never reach an image."""
    planted = []
    for pattern in SECRET_EXCLUDES:
        rel = pattern.lstrip("/").replace("*", "planted")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("secret\n")
        planted.append(rel)
    secrets = {
        "etc/haoscar/ha.key": "k" * 64,
        "etc/haoscar/api.token": "t" * 40,
        "etc/haoscar/cluster.yaml": "fencing:\n  password: hunter2\n",
        "var/lib/haoscar/haoscar.db": "SQLite format 3\0",
        "home/alice/.bash_history": "ls\n",
    }
    for rel, text in secrets.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    keygen(root / "root/.ssh/id_ed25519")
    keygen(root / "var/lib/haoscar/ssh/id_ed25519")
    keygen(root / "etc/ssh/ssh_host_ed25519_key")
    (root / "etc/shadow").write_text(f"root:{HASH}:19000:0:99999:7:::\nnobody:*:19000::::::\n")
    (root / "etc/shadow").chmod(0o640)
    (root / "etc/motd").write_text("a head\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin prohibit-password\n")
    return [*planted, *secrets, "root/.ssh", "var/lib/haoscar/ssh", "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub"]  # fmt: skip


def test_a_fetched_head_image_holds_no_secret_and_a_stray_key_is_refused(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab()
    head_state = lab.host_dir(HEAD) / "var/lib/haoscar"
    golden = lab.host_dir(GOLDEN) / "srv/golden"
    must_not_leak = head_tree(golden)
    keygen(golden / "opt/app/deploy_key")  # a private key on no list: the scan must catch it
    identity = ensure_identity(head_state)
    with lab_sshd(lab, GOLDEN, [identity.public_key]) as address:
        fetch = ["image", "fetch", "serverimage", "--golden-client", address, "--source-root", "/srv/golden"]
        refused = haoscar(lab, *fetch)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        message = " ".join(refused.stderr.split())
        assert "image serverimage holds secrets and was not stored" in message, message
        assert "/opt/app/deploy_key: a private key" in message and "Traceback" not in refused.stderr
        assert json.loads(haoscar(lab, "image", "list", "--json").stdout) == []

        (golden / "opt/app/deploy_key").unlink()
        fetched = haoscar(lab, *fetch, "--json")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    image = head_state / "images/serverimage/versions/1/root"
    for rel in must_not_leak:
        assert not (image / rel).exists(), rel
    for kept in ("home", "root", "etc/haoscar", "var/lib/haoscar"):
        assert (image / kept).is_dir() and not any((image / kept).iterdir()), kept  # mount points, empty
    assert (image / "etc/motd").read_text() == "a head\n"
    assert (image / "etc/shadow").read_text() == "root:!*:19000:0:99999:7:::\nnobody:*:19000::::::\n"
    assert (image / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert scan(image) == []


def test_publishing_a_tree_with_a_private_key_is_refused(make_lab: MakeLab) -> None:
    lab = make_lab()
    tree = lab.host_dir(HEAD) / "srv/tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("hello\n")
    keygen(tree / "etc/ssl/private/site.key")
    (tree / "etc/shadow").write_text(f"root:{HASH}:19000:0:99999:7:::\n")
    result = haoscar(lab, "image", "import", "oscarimage", "/srv/tree")
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "image oscarimage holds secrets and was not stored" in message, message
    assert "/etc/ssl/private/site.key: a private key" in message
    assert "/etc/shadow: password hashes of root" in message
    assert "Traceback" not in result.stderr
    assert not (lab.host_dir(HEAD) / "var/lib/haoscar/images/oscarimage").exists()
