"""The file system of a lab host: what it shares with this machine, what is copy-on-write, what is private.

- **Private** (``PRIVATE_DIRS``): the host's own directories under ``LAB_DIR/hosts/HOST/``, bound over /home,
  /etc/haoscar, /var/lib/haoscar, /srv and /run. Seen from outside as ``Lab.host_dir(host) / "var/lib/haoscar"``.
- **Copy-on-write** (``COW_DIRS``): /etc, /usr, /var/lib, /var/cache, /var/log, /var/spool, /root and /opt are
  overlayfs mounts whose lower layer is this machine's directory and whose upper layer is the host's own. A host
  reads the machine's files until it writes one; its writes (useradd, dpkg, /etc/hosts, ssh known hosts) land in
  its upper layer and never reach the machine or another host. The private binds are mounted on top, so
  /etc/haoscar and /var/lib/haoscar stay private, not copy-on-write.
- **Shared**: everything else (/boot, /tmp, /var/tmp, /work, /dev...), the machine's own.

The upper and work directories live under ``COW_BASE`` (``/var/tmp/haoscar-lab-cow/LAB-KEY/HOST/``), never under
the lab's own directory: overlayfs refuses an upper or work directory inside one of its lower directories, and the
default state directory (/var/lib/haoscar) lies inside the lower /var/lib. /var/tmp is on the root file system
(extended attributes, which overlayfs needs for whiteouts) and is not overlaid. ``LAB-KEY`` is the lab's name plus a
hash of its directory, so two labs of one name in two state directories never share a layer. Like the host's
private tree it survives a crash (it is the host's disk) and is removed by ``lab down``.

The heads (roles ``primary`` and ``standby``) get /home on a file system of its own (``HOME_FS``: a tmpfs mounted
on their tree's ``home`` by the lab, in the root mount namespace so that a test still reaches it by its path), as
two real heads have two disks. NFS-Ganesha's file handles name a file by its file system and inode: with both heads'
copies on this machine's one ext4, the new head's Ganesha would open the old head's inodes by handle after a
failover and a compute node's kernel mount would go on writing into the dead head's copy; on two file systems the
handle is stale on the new head, exactly as in production (docs/nfs.md: the node remounts). The tmpfs lives as long
as the lab (a crash and a restore keep it, like a disk) and is unmounted by ``lab down``.

Each host also gets ``/etc/haoscar/no-image-sync``: a lab host is not a whole machine, so ``node sync`` (an rsync
of an image onto /) refuses it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

# Host directory (relative to the host's tree) -> where it is mounted inside the host.
PRIVATE_DIRS = ("home", "etc/haoscar", "var/lib/haoscar", "srv", "run")
# The machine's directories a host sees copy-on-write (relative to /). No two nest: each is its own overlay.
COW_DIRS = ("etc", "usr", "var/lib", "var/cache", "var/log", "var/spool", "root", "opt")
COW_BASE = Path("/var/tmp/haoscar-lab-cow")
NO_IMAGE_SYNC = "no-image-sync"
HOME_FS_ROLES = ("primary", "standby")
HOME_FS_OPTIONS = "size=1g,mode=0755,nosuid,nodev"
NO_IMAGE_SYNC_TEXT = (
    "this lab host shares /boot, /tmp and the machine's other directories with its lab machine; "
    "an image sync onto / would change the machine\n"
)


def cow_root(lab_dir: Path, lab_name: str) -> Path:
    """Where the copy-on-write layers of every host of the lab at ``lab_dir`` live."""
    key = hashlib.sha256(str(Path(lab_dir).resolve()).encode()).hexdigest()[:12]
    return COW_BASE / f"{lab_name}-{key}"


def _check_outside_lowers(path: Path) -> None:
    resolved = path.resolve()
    for sub in COW_DIRS:
        if resolved.is_relative_to(Path("/", sub)):
            raise RuntimeError(f"copy-on-write layers at {resolved} lie inside the overlaid /{sub}")


def host_mount_args(lab_dir: Path, lab_name: str, host: str, role: str = "") -> list[str]:
    """The arguments of ``hostinit.py`` after the host name: ``--cow DIR:UPPER:WORK`` per copy-on-write
    directory, then ``SRC:DST`` per private directory. Creates the directories and the no-image-sync marker, and
    mounts a head's /home file system (``mount_home_fs``)."""
    tree = Path(lab_dir) / "hosts" / host
    layers = cow_root(lab_dir, lab_name) / host
    _check_outside_lowers(layers)
    args: list[str] = []
    for sub in COW_DIRS:
        upper, work = layers / sub / "upper", layers / sub / "work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        args += ["--cow", f"/{sub}:{upper}:{work}"]
    for sub in PRIVATE_DIRS:
        (tree / sub).mkdir(parents=True, exist_ok=True)
        args.append(f"{tree / sub}:/{sub}")
    (tree / "etc/haoscar" / NO_IMAGE_SYNC).write_text(NO_IMAGE_SYNC_TEXT)
    mount_home_fs(lab_dir, host, role)
    return args


def remove_cow(lab_dir: Path, lab_name: str) -> None:
    """Remove the copy-on-write layers of every host of the lab (its hosts must be gone)."""
    shutil.rmtree(cow_root(lab_dir, lab_name), ignore_errors=True)


def _mount_points_under(top: Path) -> list[Path]:
    """Mount points at or below ``top`` in this mount namespace, deepest first."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with space, tab, newline and backslash escaped as octal.
            point = Path(line.split()[4].encode().decode("unicode_escape"))
            if point == top or point.is_relative_to(top):
                found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def mount_home_fs(lab_dir: Path, host: str, role: str) -> None:
    """Give a head's /home a file system of its own (see the module's docstring); nothing for other roles, and
    nothing when it is mounted already (a restore after a crash keeps the head's disk)."""
    if role not in HOME_FS_ROLES:
        return
    home = (Path(lab_dir) / "hosts" / host / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if home in _mount_points_under(home):
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", HOME_FS_OPTIONS, f"haoscar-home-{host}", str(home)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"could not mount the /home of {host} on {home}: {done.stderr.strip()}")


def unmount_all_under(lab_dir: Path) -> None:
    """Detach every mount below the lab's directory (the heads' /home), deepest first, before it is removed: a
    lazy unmount never hangs, and the directory tree is then removed from the root file system only."""
    for point in _mount_points_under(Path(lab_dir).resolve()):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=30, check=False)
