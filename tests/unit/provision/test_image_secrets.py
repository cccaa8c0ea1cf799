"""What never enters an image: the exclusion list applied by rsync to a fake root holding every listed path, the
shadow locking of a fetch, and the scan that refuses to publish private keys, password hashes and haoscar's own
secret files (nothing is stored then)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.provision.image_rsync import fetch_rules
from haoscar.provision.image_secrets import SECRET_EXCLUDES, lock_shadow, scan, shadow_hashes
from haoscar.provision.images import ImageStore

HASH = "$6$salt$Wq8yBgoMsEvmQW7kHqGfXz0YcI0r5e3vPq2y7oM6e0E2tZ7rGm7u3sFJdZ8K2l7Yj0pV5u1tq9kqMZs9C5Jc."
SHADOW = f"root:{HASH}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:!{HASH}:19000::::::\nbob:!:1::::::\n"


def private_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def fake_head(root: Path) -> dict[str, Path]:
    """A root tree holding something at every excluded path, and files that must stay."""
    planted = {}
    for pattern in SECRET_EXCLUDES:
        rel = pattern.lstrip("/").replace("*", "planted-secret")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret\n")
        planted[pattern] = path
    (root / "root/.ssh").mkdir(parents=True)
    private_key(root / "root/.ssh/id_ed25519")
    (root / "home/alice").mkdir(parents=True)
    (root / "home/alice/notes").write_text("alice's\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin prohibit-password\n")
    (root / "etc/motd").write_text("kept\n")
    return planted


def test_every_excluded_path_stays_out_of_a_copy_and_the_directories_stay(tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    planted = fake_head(source)
    rules = tmp_path / "rules"
    rules.write_text("".join(f"{rule}\n" for rule in fetch_rules("/", [], [])))
    subprocess.run(["rsync", "-aHAX", f"--exclude-from={rules}", f"{source}/", f"{copy}/"], check=True)
    for pattern, path in planted.items():
        assert not (copy / path.relative_to(source)).exists(), pattern
    assert not (copy / "root/.ssh").exists() and not (copy / "home/alice").exists()
    assert (copy / "home").is_dir() and (copy / "root").is_dir() and (copy / "etc/haoscar").is_dir()
    assert (copy / "etc/motd").read_text() == "kept\n" and (copy / "etc/ssh/sshd_config").is_file()


def test_lock_shadow_replaces_every_hash_and_keeps_the_file_mode(tmp_path: Path) -> None:
    shadow = tmp_path / "etc/shadow"
    shadow.parent.mkdir()
    shadow.write_text(SHADOW)
    shadow.chmod(0o640)
    linked = tmp_path / "older-version-shadow"
    linked.hardlink_to(shadow)
    assert shadow_hashes(SHADOW) == ["root", "alice"]
    assert lock_shadow(tmp_path) == ["etc/shadow:root", "etc/shadow:alice"]
    text = shadow.read_text()
    assert HASH not in text and text.startswith("root:!*:19000:") and "bob:!:1" in text
    assert shadow.stat().st_mode & 0o777 == 0o640
    assert linked.read_text() == SHADOW, "the hard-linked earlier version was changed in place"
    assert scan(tmp_path) == []


def test_scan_names_keys_hashes_and_haoscar_secrets_but_not_binaries(tmp_path: Path) -> None:
    private_key(tmp_path / "opt/app/deploy_key")
    (tmp_path / "etc/ssl").mkdir(parents=True)
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(tmp_path / "etc/ssl/app.pem")], check=True
    )
    (tmp_path / "etc/shadow").write_text(SHADOW)
    (tmp_path / "etc/haoscar").mkdir()
    (tmp_path / "etc/haoscar/ha.key").write_text("k" * 64)
    # A program carries the header as a constant, without a key behind it: not a key.
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/ssh-keygen").write_bytes(b"\x7fELF\0-----BEGIN OPENSSH PRIVATE KEY-----\0\0more")
    (tmp_path / "opt/app/deploy_key.pub").write_text("ssh-ed25519 AAAA public\n")
    assert scan(tmp_path) == [
        "/etc/haoscar/ha.key: a haoscar or root secret",
        "/etc/shadow: password hashes of root, alice",
        "/etc/ssl/app.pem: a private key",
        "/opt/app/deploy_key: a private key",
    ]


def test_an_import_holding_a_private_key_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("hi\n")
    private_key(tree / "etc/ssl/private/site.key")
    store = ImageStore(tmp_path / "state")
    with pytest.raises(UserError) as caught:
        store.import_tree("leaky", tree)
    assert "image leaky holds secrets and was not stored" in caught.value.message
    assert "/etc/ssl/private/site.key: a private key" in str(caught.value)
    assert store.names() == [] and not (tmp_path / "state/images/leaky").exists()
