"""What ``haoscar node sync`` sends to a running node and what it never touches (SystemImager's
``updateclient.local.exclude``, completed with what haoscar's installer writes per node): the rsync filter rules,
the rsync command line, the guard the node runs before rsync starts, and the parser of rsync's itemized changes.

Three kinds of paths (docs/node-sync.md lists them with the reasons):

- ``NODE_FILES``: the node's own files, written by the installer (``data/installer/install.sh``) or kept by the node
  (its ssh host keys, machine-id, root's home): never sent, never deleted;
- ``MOUNT_DIRS``, and every other mount point the node has (its ``/proc/mounts``, read by the probe): pseudo,
  volatile and mounted file systems (``/proc``, ``/home`` from the head): never touched at all, not even their
  mode or time (``/proc`` and a root-squashed NFS ``/home`` refuse it);
- ``STATE_DIRS``: the contents of a running system's state directories (logs, spools, DHCP leases, Slurm's and
  munge's state): never sent, never deleted; the directory itself comes from the image when it has one, and is
  never deleted when it has not;
- ``NO_DELETE``: the kernels in ``/boot`` and their modules: a new kernel of the image arrives, but the one the
  node's boot loader names (and the modules the running kernel loads) are never deleted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

NODE_FILES: tuple[str, ...] = (
    # identity and addresses (install.sh: configure, write_network)
    "/etc/hostname",
    "/etc/hosts",
    "/etc/fstab",
    "/etc/machine-id",
    "/etc/network/interfaces",
    "/etc/systemd/network/10-haoscar-*.link",
    "/etc/haoscar/",  # node.conf, the munge key, accounts.managed, no-image-sync
    "/etc/ssh/ssh_host_*",
    "/etc/ssh/ssh_known_hosts",  # the cluster's host keys (cluster sync's block)
    "/root/",  # root's home: the cluster key in authorized_keys
    # joining the cluster (install.sh: join_cluster): time, munge and slurmd from the heads' alias
    "/etc/systemd/timesyncd.conf.d/haoscar.conf",
    "/etc/default/munge",
    "/etc/default/slurmd",
    "/etc/systemd/system/slurmd.service.d/haoscar.conf",
    "/etc/tmpfiles.d/haoscar-slurm.conf",
    # the boot loader the installer set up (install.sh: bootloader, efi_bootloader)
    "/boot/extlinux/",
    "/boot/efi/",
    "/etc/kernel/postinst.d/zz-haoscar-esp",
    "/etc/initramfs/post-update.d/zz-haoscar-esp",
    # the running system's own
    "/etc/adjtime",
    "/etc/mtab",
    "/var/lib/systemd/random-seed",
)
MOUNT_DIRS: tuple[str, ...] = (
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/home",
    "/mnt",
    "/media",
    "/srv",
    "/lost+found",
)
STATE_DIRS: tuple[str, ...] = (
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/backups",
    "/var/cache/apt",
    "/var/lib/dhcp",
    "/var/lib/nfs",
    "/var/lib/slurm",
    "/var/lib/munge",
    "/var/lib/chrony",
    "/var/lib/haoscar",
    "/var/lib/systemd/timesync",
    "/var/lib/systemd/timers",
    "/var/lib/systemd/coredump",
    "/var/lib/systemd/linger",
)
NO_DELETE: tuple[str, ...] = ("/boot/**", "/usr/lib/modules/**", "/lib/modules/**")

MARKER = "/etc/haoscar/no-image-sync"
REFUSED = "haoscar-refused:"  # what the guard prints before it exits GUARD_EXIT
GUARD_EXIT = 97
RSYNC_FLAGS: tuple[str, ...] = ("-aHAX", "--numeric-ids", "--delete", "--itemize-changes")
IO_TIMEOUT_S = 120  # rsync --timeout: a node silent this long mid-transfer fails instead of hanging


def filter_rules(mounts: Sequence[str] = (), installed: Sequence[str] = ()) -> list[str]:
    """rsync filter rules, anchored at the transfer's root (the image's ``/`` onto the node's ``/``); ``mounts``:
    the node's own mount points, left alone like ``MOUNT_DIRS``; ``installed``: files the installer put on every
    node from the database (``install_plan``'s node files: the NFS watch agent and its unit), kept like
    ``NODE_FILES``."""
    extra = [m for m in mounts if m.startswith("/") and m != "/" and not kept(m) and "\n" not in m]
    rules = [f"- {path}" for path in NODE_FILES]
    rules += [f"- {path}" for path in sorted(set(installed)) if path.startswith("/") and "\n" not in path]
    rules += [f"- {path}" for path in (*MOUNT_DIRS, *sorted(set(extra)))]
    rules += [rule for path in STATE_DIRS for rule in (f"- {path}/*", f"P {path}/")]
    rules += [f"P {path}" for path in NO_DELETE]
    return rules


def _matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        return path == pattern.rstrip("/") or path.startswith(pattern)
    return fnmatchcase(path, pattern)


def kept(path: str) -> bool:
    """Whether node sync leaves the node's ``path`` alone (neither sent nor deleted; ``NO_DELETE`` aside)."""
    if any(_matches(path, pattern) for pattern in NODE_FILES):
        return True
    if any(path == directory or path.startswith(f"{directory}/") for directory in MOUNT_DIRS):
        return True
    return any(path.startswith(f"{directory}/") for directory in STATE_DIRS)


def remote_guard(forbidden_boot_id: str, marker_path: str = MARKER) -> str:
    """``--rsync-path``: the node refuses, in the very session that would write, when it holds the marker file
    (lab hosts, a host an admin protected) or runs on the syncing machine's own kernel (a container, this machine:
    its boot id equals ours); otherwise it starts rsync."""
    marker = shlex.quote(marker_path)
    same_kernel = f"{REFUSED} this host runs on the syncing machine's kernel (a container or the machine itself)"
    return (
        f'if [ -e {marker} ]; then echo {REFUSED} "$(head -c 500 {marker})" >&2; exit {GUARD_EXIT}; fi; '
        f'if [ "$(cat /proc/sys/kernel/random/boot_id)" = {shlex.quote(forbidden_boot_id)} ]; then '
        f"echo {shlex.quote(same_kernel)} >&2; exit {GUARD_EXIT}; fi; rsync"
    )


def rsync_command(
    image_root: Path, ssh_config: Path, filters: Path, boot_id: str, *, dry_run: bool, connect_timeout: float
) -> str:
    """The shell command ClusterShell runs here once per node (``%h``: the node's name, which ``ssh_config``
    resolves; ``filters`` may hold it too: a filter file per node): the image version's tree onto the node's ``/``."""
    rsh = f"ssh -F {shlex.quote(str(ssh_config))} -o ConnectTimeout={max(1, round(connect_timeout))}"
    argv = ["rsync", *transfer_options(filters, dry_run=dry_run), "-e", rsh, f"--rsync-path={remote_guard(boot_id)}"]
    return shlex.join([*argv, f"{image_root}/"]) + " %h:/"


def transfer_options(filters: Path, *, dry_run: bool) -> list[str]:
    """rsync's options for a node sync, whatever the transport: the copy flags, the filter file, the dry run."""
    options = [*RSYNC_FLAGS, f"--timeout={IO_TIMEOUT_S}", f"--filter=merge {filters}"]
    return [*options, "--dry-run"] if dry_run else options


# ------------------------------------------------------------------------------------------------ itemized output

# "YXcstpoguax PATH": Y the update type, X the file type, then the attributes ("+" throughout: a new entry).
_ITEM = re.compile(r"^([<>ch.][fdLDS])([.+ ?a-zA-Z]{9}) (.+)$")


@dataclass
class Changes:
    """What rsync changed (or, dry, would change) on one node: paths as seen on the node (``/etc/motd``)."""

    changed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"changed": len(self.changed), "new": len(self.new), "deleted": len(self.deleted)}


def _path(text: str, kind: str) -> str:
    # Symbolic links show " -> TARGET", hard links " => TARGET".
    for arrow in (" -> ", " => ") if kind in "Lf" else ():
        if arrow in text:
            text = text.split(arrow, 1)[0]
    return "/" + text.lstrip("/")


def parse_itemized(lines: list[str]) -> Changes:
    """rsync's ``--itemize-changes`` lines as changed / new / deleted paths. A directory whose only change is its
    time (its entries changed) is not listed; other lines (warnings) are ignored."""
    changes = Changes()
    for line in lines:
        if line.startswith("*deleting "):
            changes.deleted.append("/" + line.removeprefix("*deleting ").strip().lstrip("/"))
            continue
        match = _ITEM.match(line)
        if match is None:
            continue
        code, attributes, rest = match.groups()
        path = _path(rest, code[1])
        if set(attributes) == {"+"}:
            changes.new.append(path)
        elif code[1] == "d" and set(attributes) <= {".", "t", " "}:
            continue
        else:
            changes.changed.append(path)
    return changes
