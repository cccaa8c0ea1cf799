"""What ``node sync`` sends and keeps, checked with the real rsync between two local trees (an "image" and a
"node"), the per-node files the installer writes, the guard the node runs, and the parsing of rsync's itemized
changes."""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from haoscar.provision import node_sync as ns
from haoscar.provision.node_sync_rules import (
    GUARD_EXIT,
    REFUSED,
    kept,
    parse_itemized,
    remote_guard,
    rsync_command,
    transfer_options,
)
from haoscar.provision.slurm_conf import host_dirs

INSTALLER = (resources.files("haoscar") / "data" / "installer" / "install.sh").read_text()


def _written_by_installer() -> set[str]:
    """Every path install.sh writes into the new system (redirections, the munge key, the kernel hooks)."""
    paths = set(re.findall(r'>>?\s*"(\$(?:TARGET|etc)/[^"]+)"', INSTALLER))
    paths |= set(re.findall(r'(?:key=|for hook in )"(\$TARGET/[^"]+)"', INSTALLER))
    paths |= set(re.findall(r'"(\$TARGET/etc/[^"]+)";? do', INSTALLER))
    expanded = {p.replace("$TARGET", "").replace("$etc", "/etc") for p in paths}
    return {re.sub(r"\$\{?[A-Za-z_]+\}?", "x", p) for p in expanded}


def test_every_file_the_installer_writes_per_node_is_kept() -> None:
    written = _written_by_installer()
    # The scan finds what it should (a regex that matches nothing would pass vacuously).
    assert {"/etc/hostname", "/etc/fstab", "/etc/network/interfaces", "/etc/haoscar/slurm/munge.key"} <= written
    assert "/root/.ssh/authorized_keys" in written
    assert [path for path in sorted(written) if not kept(path)] == []
    assert all(kept(f"{directory}/x") for directory in host_dirs())
    assert kept("/etc/ssh/ssh_host_ed25519_key") and kept("/etc/machine-id")


@pytest.mark.parametrize(
    "path", ["/usr/bin/htop", "/etc/passwd", "/etc/shadow", "/var/lib/dpkg/status", "/etc/motd", "/boot/vmlinuz-6.1"]
)
def test_the_images_own_files_are_sent(path: str) -> None:
    assert not kept(path)


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _sync(image: Path, node: Path, filters: Path, *, dry_run: bool) -> list[str]:
    argv = ["rsync", *transfer_options(filters, dry_run=dry_run), f"{image}/", f"{node}/"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


IMAGE = {
    "/etc/motd": "the new motd\n",
    "/etc/hostname": "\n",
    "/etc/fstab": "# image\n",
    "/etc/passwd": "root:x:0:0::/root:/bin/bash\n_chrony:x:101:101::/var/lib/chrony:/usr/sbin/nologin\n",
    "/usr/bin/added": "#!/bin/sh\n",
    "/boot/vmlinuz-new": "new kernel",
    "/var/log/image.log": "image log",
}
NODE = {
    "/etc/motd": "old motd\n",
    "/etc/hostname": "node01\n",
    "/etc/fstab": "UUID=1 / ext4 0 1\n198.18.0.10:/home /home nfs4 hard 0 0\n",
    "/etc/passwd": "root:x:0:0::/root:/bin/bash\n",
    "/etc/ssh/ssh_host_ed25519_key": "node key",
    "/etc/haoscar/node.conf": "NODE='node01'\n",
    "/etc/haoscar/no-image-sync": "lab host\n",
    "/root/.ssh/authorized_keys": "ssh-ed25519 AAAA haoscar\n",
    "/usr/bin/gone": "#!/bin/sh\n",
    "/boot/vmlinuz-old": "old kernel",
    "/boot/extlinux/extlinux.conf": "LINUX /boot/vmlinuz-old\n",
    "/var/log/syslog": "node log",
    "/home/alice/data": "alice's",
    "/lost+found/#1234": "fsck's",
    "/scratch/job/out": "a local disk mounted here",
    "/var/lib/munge/seed": "munge's state",
}


def test_a_real_rsync_sends_the_image_and_keeps_the_nodes_files(tmp_path: Path) -> None:
    image, node = tmp_path / "image", tmp_path / "node"
    _tree(image, IMAGE)
    _tree(node, NODE)
    filters = ns.write_filters(tmp_path / "work", "node01", ["/", "/proc", "/home", "/scratch", "/boot/efi"])
    assert filters == tmp_path / "work" / "node01.filter"
    assert filters.stat().st_mode & 0o777 == 0o600
    assert "- /scratch\n" in filters.read_text()  # the node's own mount point, left alone

    dry = parse_itemized(_sync(image, node, filters, dry_run=True))
    assert sorted(dry.changed) == ["/etc/motd", "/etc/passwd"]
    assert sorted(dry.new) == ["/boot/vmlinuz-new", "/usr/bin/added"]
    assert dry.deleted == ["/usr/bin/gone"]
    assert (node / "etc/motd").read_text() == "old motd\n"  # a dry run changes nothing
    assert (node / "usr/bin/gone").exists()

    done = parse_itemized(_sync(image, node, filters, dry_run=False))
    assert (done.changed, done.new, done.deleted) == (dry.changed, dry.new, dry.deleted)
    assert (node / "etc/motd").read_text() == "the new motd\n"
    assert "_chrony" in (node / "etc/passwd").read_text()
    assert (node / "usr/bin/added").exists() and not (node / "usr/bin/gone").exists()
    for name in NODE.keys() - {"/etc/motd", "/etc/passwd", "/usr/bin/gone"}:
        assert (node / name.lstrip("/")).read_text() == NODE[name], name  # kept as the node had it
    assert (node / "boot/vmlinuz-new").exists()
    assert not (node / "var/log/image.log").exists()
    assert parse_itemized(_sync(image, node, filters, dry_run=True)).counts() == {"changed": 0, "new": 0, "deleted": 0}


def test_the_probe_answer_gives_the_nodes_mount_points() -> None:
    answer = ["b-id", "haoscar-mounts:", "/", "/proc", "/home", "/mnt/my\\040disk", REFUSED, "why"]
    assert ns.mount_points(answer) == ["/", "/proc", "/home", "/mnt/my disk"]
    assert ns.mount_points(["b-id", "haoscar-mounts:", "/", "/data"]) == ["/", "/data"]


def test_itemized_lines_are_read_as_changed_new_deleted() -> None:
    lines = [
        ">f.st...... etc/motd",
        ">f+++++++++ usr/bin/new file",
        "cL+++++++++ usr/bin/link -> target",
        "cd+++++++++ opt/dir/",
        ".d..t...... etc/",
        ".f...p..... etc/modes",
        "hf+++++++++ usr/bin/hard => usr/bin/new file",
        "*deleting   usr/bin/old",
        "rsync: some warning",
    ]
    changes = parse_itemized(lines)
    assert changes.changed == ["/etc/motd", "/etc/modes"]
    assert changes.new == ["/usr/bin/new file", "/usr/bin/link", "/opt/dir/", "/usr/bin/hard"]
    assert changes.deleted == ["/usr/bin/old"]


def test_the_command_line_pushes_the_version_onto_the_nodes_root_over_haoscars_ssh(tmp_path: Path) -> None:
    command = rsync_command(
        tmp_path / "v2" / "root", tmp_path / "ssh config", tmp_path / "f", "b-id", dry_run=True, connect_timeout=3
    )
    assert command.endswith(f"{tmp_path}/v2/root/ %h:/")
    argv = shlex.split(command.removesuffix(" %h:/"))
    assert argv[:6] == ["rsync", "-aHAX", "--numeric-ids", "--delete", "--itemize-changes", "--timeout=120"]
    assert f"--filter=merge {tmp_path}/f" in argv and "--dry-run" in argv
    assert argv[argv.index("-e") + 1] == f"ssh -F '{tmp_path}/ssh config' -o ConnectTimeout=3"
    wet = rsync_command(tmp_path, tmp_path / "c", tmp_path / "f", "b", dry_run=False, connect_timeout=10)
    assert "--dry-run" not in shlex.split(wet.removesuffix(" %h:/"))


def _guard(boot_id: str, marker: Path) -> subprocess.CompletedProcess[str]:
    # The node's shell runs the guard with rsync's own arguments after it: --version does nothing.
    command = remote_guard(boot_id, str(marker)) + " --version"
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def test_the_guard_refuses_the_marker_and_this_machines_kernel_and_runs_rsync_elsewhere(tmp_path: Path) -> None:
    marker = tmp_path / "no-image-sync"
    elsewhere = _guard("another-kernel", marker)
    assert elsewhere.returncode == 0 and elsewhere.stdout.startswith("rsync")
    same = _guard(ns.local_boot_id(), marker)
    assert same.returncode == GUARD_EXIT and same.stdout == ""
    assert same.stderr.startswith(f"{REFUSED} this host runs on the syncing machine's kernel")
    marker.write_text("lab host * $(touch /nope): shares /boot\n")
    marked = _guard("another-kernel", marker)
    assert marked.returncode == GUARD_EXIT and marked.stdout == ""
    assert marked.stderr == f"{REFUSED} lab host * $(touch /nope): shares /boot\n"


def test_the_probe_refuses_the_marker_with_its_reason_and_a_shared_kernel() -> None:
    assert ns.refusal(["other-boot-id"], "ours") is None
    assert ns.refusal(["ours"], "ours") == (
        "it runs on this machine's own kernel (a container or this machine itself): never synced"
    )
    reason = ns.refusal(["other", REFUSED, "lab host: shares this machine's /boot"], "ours")
    assert reason == "/etc/haoscar/no-image-sync: lab host: shares this machine's /boot"
    assert ns.refusal([], "ours") is not None
