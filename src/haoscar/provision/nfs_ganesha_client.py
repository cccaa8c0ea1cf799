"""What a compute node needs for the heads' NFS exports (docs/nfs.md): its fstab lines and, with replicated
storage, the stale-handle remount agent.

Why an agent: NFS-Ganesha's VFS file handles carry the exported filesystem's id and the kernel's own handle of the
file (inode and generation). The standby's copy of /home is another filesystem with other inodes, so after a
failover every handle a kernel client holds - the mount's root first - is answered NFS4ERR_STALE, and a Linux
client does not look a mount's root up again by itself: every access says "Stale file handle" until the mount is
made again. A hard mount rides out the seconds without a server (requests wait, nothing fails); the agent then
finds the stale root (``stat -f`` on it, which a waiting server makes wait, and which ESTALE makes fail at once)
and remounts it (``umount -l`` then ``mount``: processes holding files open there get ESTALE on those files, new
opens work). With shared storage (both heads mount the same filesystem) the handles stay valid and no agent runs.

``node_files(spec)`` gives each file (path, content, mode) for the image's join step to install.
"""

from __future__ import annotations

from haoscar.provision.nfs_ganesha import client_mounts
from haoscar.spec.models import ClusterSpec

AGENT_PATH = "/usr/local/sbin/haoscar-nfs-watch"
UNIT_PATH = "/etc/systemd/system/haoscar-nfs-watch.service"

AGENT = """#!/bin/sh
# haoscar-nfs-watch: remount an NFS mount whose file handles went stale after a head failover (docs/nfs.md).
# A mount that only waits (the server is moving) is left alone: the hard mount resumes by itself.
interval="${HAOSCAR_NFS_WATCH_INTERVAL:-2}"
mounts="${HAOSCAR_NFS_WATCH_MOUNTS:-/proc/mounts}"  # the two settings and ONCE are for tests
while :; do
    for mountpoint in "$@"; do
        grep -q " $mountpoint nfs4 " "$mounts" || continue
        if ! out=$(timeout -s KILL 10 stat -f -c %T "$mountpoint/." 2>&1); then
            case "$out" in
            *"Stale file handle"* | *"Unknown error 521"*)  # ESTALE, or EBADHANDLE (NFS4ERR_BADHANDLE)
                logger -t haoscar-nfs-watch "$mountpoint: $out; remounting (a head failover moved the export)"
                umount -l "$mountpoint" && mount "$mountpoint" ;;
            esac
        fi
    done
    [ -n "${HAOSCAR_NFS_WATCH_ONCE:-}" ] && exit 0
    sleep "$interval"
done
"""


def unit_text(mountpoints: list[str]) -> str:
    return f"""[Unit]
Description=haoscar: remount NFS exports left stale by a head failover
After=remote-fs.target

[Service]
ExecStart={AGENT_PATH} {" ".join(mountpoints)}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def fstab_lines(spec: ClusterSpec) -> str:
    return "".join(f"{mount.fstab_line()}\n" for mount in client_mounts(spec))


def node_files(spec: ClusterSpec) -> dict[str, tuple[str, int]]:
    """path -> (content, mode) of the files a compute node needs beyond its fstab lines."""
    if spec.nfs.storage != "replicated":
        return {}
    mountpoints = [mount.path for mount in client_mounts(spec)]
    return {AGENT_PATH: (AGENT, 0o755), UNIT_PATH: (unit_text(mountpoints), 0o644)}
