"""The image store's parts: golden-client exclusions, rsync itemize parsing, the apt mirror, per-node files, sshd."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.provision.image_build import (
    BASE_PACKAGES,
    apt_mirror,
    check_build_args,
    stage_of,
    strip_node_identity,
)
from haoscar.provision.image_diff import diff_trees, parse_itemized
from haoscar.provision.image_rsync import exclude_rules, network_mounts, parse_mounts
from haoscar.provision.sshkeys import ensure_identity, prepare_sshd

MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
fs1:/export/home /home nfs4 rw,vers=4.2 0 0
//files/share /srv/golden/mnt/share\\040space cifs rw 0 0
user@x: /srv/golden/remote fuse.sshfs rw 0 0
tmpfs /srv/golden/scratch tmpfs rw 0 0
"""


def test_network_mounts_are_excluded_relative_to_the_source_root() -> None:
    mounts = network_mounts(parse_mounts(MOUNTS))
    assert mounts == ["/home", "/srv/golden/mnt/share space", "/srv/golden/remote"]
    whole = exclude_rules("/", mounts, ["/var/lib/haoscar/images"])
    assert whole == [
        "/proc/*",
        "/sys/*",
        "/dev/*",
        "/run/*",
        "/tmp/*",
        "/home/*",
        "/srv/golden/mnt/share space/*",
        "/srv/golden/remote/*",
        "/var/lib/haoscar/images/*",
    ]
    part = exclude_rules("/srv/golden/", mounts, ["/var/lib/haoscar/images"])
    assert part[5:] == ["/mnt/share space/*", "/remote/*"]


def test_itemized_changes_are_classified() -> None:
    output = "\n".join(
        [
            "*deleting  |gone/f",
            "*deleting  |gone/",
            ">f.s.......|chg",
            "cL+++++++++|lnk",
            "hf+++++++++|hl",
            ".d..t......|./",
            ".d...p.....|d1/",
            ".f........x|xattr-only",
            "cd+++++++++|newdir/",
        ]
    )
    diff = parse_itemized(output)
    assert diff.added == ["hl", "lnk", "newdir/"]
    assert diff.removed == ["gone/", "gone/f"]
    assert diff.changed == ["chg", "d1/", "xattr-only"]


def test_diff_sees_mode_and_owner_changes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        (root / "f").write_text("same")
        os.utime(root / "f", (1_700_000_000, 1_700_000_000))
    (b / "f").chmod(0o600)
    assert diff_trees(a, b).changed == ["f"]
    assert diff_trees(a, a).empty
    with pytest.raises(UserError, match="not an image tree"):
        diff_trees(a, tmp_path / "missing")


def test_mirror_comes_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    mirror = apt_mirror("bookworm", tmp_path)
    assert mirror.uri == "http://mirror.example/debian"
    assert mirror.keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"
    # Another suite comes from the same archive, never from the security mirror.
    assert apt_mirror("trixie", tmp_path).uri == "http://mirror.example/debian"

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "sources.list").write_text(
        "# old style\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/d bookworm main\n"
    )
    assert apt_mirror("bookworm", legacy).uri == "http://m.example/d"
    assert apt_mirror("bookworm", legacy).keyring == "/k.gpg"
    with pytest.raises(UserError, match="no Debian mirror is configured"):
        apt_mirror("bookworm", tmp_path / "none")


def test_build_arguments_and_stages() -> None:
    assert check_build_args("bookworm", ["htop", "openssh-server"]) == [*BASE_PACKAGES, "htop"]
    with pytest.raises(UserError, match="not Debian package names: rm -rf"):
        check_build_args("bookworm", ["rm -rf"])
    with pytest.raises(UserError, match="not a Debian suite"):
        check_build_args("../etc", [])
    assert stage_of("I: Configuring the base system...") == (75, "configuring packages")
    assert stage_of("W: something") is None


def test_node_identity_is_stripped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/network").mkdir()
    (root / "var/cache/apt/archives").mkdir(parents=True)
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key"):
        (root / "etc/ssh" / name).write_text("secret")
    (root / "etc/ssh/sshd_config").write_text("Port 22\n")
    (root / "etc/hostname").write_text("buildhost\n")
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "var/cache/apt/archives/bash.deb").write_text("deb")
    (root / "etc/ssl/private").mkdir(parents=True)
    (root / "etc/ssl/private/ssl-cert-snakeoil.key").write_text("made by ssl-cert's postinst")
    strip_node_identity(root)
    assert not (root / "etc/ssl/private/ssl-cert-snakeoil.key").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert (root / "etc/hostname").read_text() == ""
    assert (root / "etc/machine-id").read_text() == ""
    assert "iface lo inet loopback" in (root / "etc/network/interfaces").read_text()
    assert not list((root / "var/cache/apt/archives").iterdir())


def test_identity_and_sshd_files(tmp_path: Path) -> None:
    identity = ensure_identity(tmp_path / "state")
    assert identity.public_key.startswith("ssh-ed25519 ")
    assert stat.S_IMODE(identity.key.stat().st_mode) == 0o600
    assert ensure_identity(tmp_path / "state").public_key == identity.public_key
    argv = identity.ssh_argv(2222)
    assert argv[argv.index("-p") + 1] == "2222"
    assert "StrictHostKeyChecking=accept-new" in argv
    assert f"UserKnownHostsFile={identity.known_hosts}" in argv

    setup = prepare_sshd(tmp_path / "sshd", "198.18.0.5", [identity.public_key])
    config = setup.config.read_text()
    for line in (
        "ListenAddress 198.18.0.5",
        f"AuthorizedKeysFile {setup.authorized_keys}",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
    ):
        assert line in config.splitlines()
    assert setup.authorized_keys.read_text() == identity.public_key + "\n"
    assert stat.S_IMODE(setup.authorized_keys.stat().st_mode) == 0o600
