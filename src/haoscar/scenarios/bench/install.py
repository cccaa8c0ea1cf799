"""``haoscar bench install``: one VM installed over the network in a fresh lab, timed stage by stage.

The VM (qemu, TCG) network-boots from dnsmasq and the boot server in the lab's head host and installs the tiny
image (post-install action: shutdown). Reported: the whole install (VM start to power-off), the time in each stage
as the head saw the reports arrive, and in the same run the image throughput measured the same way for haoscar and
rsync (issue 15): the same tree into one namespace host, timed on that host from one start signal to the copy's
end, through the installer's own fetch path and with rsync from an rsync daemon in the head. The boot server's own
send time of the VM's stream is kept apart (``vm_stream_server_side_mb_per_s``): it leaves out the client's work.
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.lab import LabInterface
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision import install_progress
from haoscar.provision.images import ImageStore
from haoscar.provision.install_states import InstallState
from haoscar.provision.installer_build import default_cache_dir
from haoscar.scenarios.bench.install_fetch import (
    RSYNC_ARGS,
    Entry,
    RsyncDaemon,
    busybox_path,
    differences,
    installer_script,
    manifest,
    rsync_script,
    run_together,
)
from haoscar.scenarios.install_lab import InstallHead, prepare_head
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.lab_fixtures import unique_lab_name

NODE, MAC = "node01", "52:54:00:be:00:01"
COPY_HOST, COPY_IP = "copy1", "198.18.0.160"
INSTALL_TIMEOUT = 300.0
COPY_RUNS = 3


def _watch_install(head: InstallHead, vm: Vm) -> tuple[float, dict[str, float]]:
    """Start the VM and follow the head's record of it until power-off: (total seconds, seconds per stage)."""
    started = time.monotonic()
    vm.start("n")
    while vm.running():
        if time.monotonic() - started > INSTALL_TIMEOUT:
            raise UserError(f"the VM did not finish installing in {INSTALL_TIMEOUT:.0f} s:\n{vm.log_tail(20)}")
        time.sleep(0.2)
    total = time.monotonic() - started
    final = install_progress.read_one(head.state, NODE)
    if final is None or final.state != InstallState.INSTALLED:
        reason = final.reason if final is not None else "no report reached the head"
        raise UserError(f"the VM powered off without installing ({reason}):\n{vm.log_tail(20)}")
    # The head stamps each stage's first report (monotonic clock, shared by every process of this machine).
    marks = sorted(final.marks.items(), key=lambda item: item[1])
    stages = {"netboot": round(marks[0][1] - started, 2)} if marks else {}
    for (stage, begin), (_next, end) in itertools.pairwise(marks):
        stages[stage] = round(end - begin, 2)
    stages["power-off"] = round(started + total - marks[-1][1], 2) if marks else 0.0
    return total, stages


def _image_stream_rate(head: InstallHead) -> tuple[int, float]:
    """(bytes, seconds) of the last complete image stream, as the boot server recorded it."""
    from sqlalchemy import select

    from haoscar.commands.wiring import open_cluster_database
    from haoscar.db.models import Event

    db = open_cluster_database(head.state, upgrade=False)
    try:
        with db.session() as session:
            event = session.scalars(select(Event).where(Event.kind == "image-sent").order_by(Event.id.desc())).first()
            if event is None:
                raise UserError("the boot server recorded no image stream")
            return int(event.data["bytes"]), float(event.data["seconds"])
    finally:
        db.close()


def _install_token(head: InstallHead) -> str:
    from haoscar.db.session import open_database
    from haoscar.provision.install_tokens import mint

    db = open_database(head.state)
    try:
        return mint(db, NODE)
    finally:
        db.close()


def _copy_once(head: InstallHead, script: str, dst: Path, expected: dict[str, Entry], what: str) -> float:
    """One copy into the copy host, timed there; the result compared file by file with the image, then removed."""
    pulls, seconds = run_together(head.lab, {COPY_HOST: script}, timeout=300)
    problems = differences(expected, dst) or [p.error for p in pulls.values() if p.error]
    shutil.rmtree(dst, ignore_errors=True)
    if problems:
        raise UserError(f"the {what} copy of the image into {COPY_HOST} is not complete: {problems}")
    return seconds


def _copy_rates(head: InstallHead, work: Path) -> dict[str, Any]:
    """The same image tree into one namespace host, timed on that host alike, COPY_RUNS times each: the installer's
    own fetch path (plan, tar stream over HTTP unpacked and checksum-checked, progress reports), the bare stream
    (wget | tar, no checksum, no reports) and rsync from an rsync daemon in the head."""
    head.lab.add_host(COPY_HOST, [LabInterface("eth0", "private", ip=COPY_IP, prefix=24)])
    root = ImageStore(head.state).current_root("oscarimage")
    expected = manifest(root)
    dst = work / "dst"
    token = _install_token(head)  # the installed node's own token was revoked at done: a fresh one
    path = busybox_path(work / "bin")
    installer = f"export PATH={path}\n" + installer_script(head.server_url, MAC, dst, token=token)
    stream = (
        f"mkdir -p {dst}\necho ready\nread go\nbusybox wget -q -O - --header 'X-Haoscar-Token: {token}' "
        f"{head.server_url}/install/{MAC}/image.tar | busybox tar -x -C {dst} && echo done\n"
    )
    times: dict[str, list[float]] = {"installer": [], "stream": [], "rsync": []}
    daemon = RsyncDaemon(head.lab, head.head, head.head_ip, root, work)
    try:
        daemon.wait_ready(head.lab, COPY_HOST)
        for _ in range(COPY_RUNS):  # interleaved, so a burst of load elsewhere hits all three alike
            times["installer"].append(_copy_once(head, installer, dst, expected, "installer's"))
            times["stream"].append(_copy_once(head, stream, dst, expected, "bare stream"))
            times["rsync"].append(_copy_once(head, rsync_script(daemon.url, dst), dst, expected, "rsync"))
    finally:
        daemon.stop()
    files = [e for e in expected.values() if e[0] == "file"]
    return {"bytes": sum(e[2] for e in files), "files": len(files), "seconds": times}


def run_bench(state_dir: Path) -> dict[str, Any]:
    """Run the benchmark in a temporary lab; the kernel download and initramfs are cached under ``state_dir``."""
    spec = default_spec().model_copy(update={"clients": []})
    work = Path(tempfile.mkdtemp(prefix="haoscar-bench-install-"))
    lab = Lab.up(spec, unique_lab_name("bi"), work / "labstate")
    vm: Vm | None = None
    head: InstallHead | None = None
    try:
        head = prepare_head(lab, default_spec(), [(NODE, MAC)], work, cache_dir=default_cache_dir(state_dir))
        head.start()
        tap = lab.add_tap("private", f"bi{os.getpid() % 100000}")
        vm = Vm(lab.switch_netns, tap, MAC, make_disk(work / "disk.raw", 256), work / "serial.log")
        install_s, stages = _watch_install(head, vm)
        sent, seconds = _image_stream_rate(head)
        copies = _copy_rates(head, work)
        mb = copies["bytes"] / 1e6
        rates = {k: round(mb / statistics.median(v), 2) for k, v in copies["seconds"].items()}
        return {
            "install_s": round(install_s, 2),
            "image_mb_per_s": rates["installer"],
            "rsync_mb_per_s": rates["rsync"],
            "bare_stream_mb_per_s": rates["stream"],
            "copy_seconds": {k: [round(x, 3) for x in v] for k, v in copies["seconds"].items()},
            "vm_stream_server_side_mb_per_s": round(sent / 1e6 / seconds, 2) if seconds > 0 else None,
            "image_mb": round(mb, 2),
            "image_files": copies["files"],
            "image_tar_mb": round(sent / 1e6, 2),
            "stages_s": stages,
            "vm": "qemu TCG, 1 vCPU, virtio-net on the lab bridge",
            "config": {
                "throughput": f"client side, all into lab host {COPY_HOST} from the head, the same image tree "
                "(file bytes / median wall time from a start signal to the copy's end over "
                f"{COPY_RUNS} interleaved runs; each copy verified file by file)",
                "bare_stream": "busybox wget | busybox tar -x of the same HTTP stream: no checksum, no progress "
                "reports (what the installer's path adds is the difference)",
                "haoscar_path": "the installer's own fetch: install.sh `network` + `pull_image` under busybox sh "
                "(tar stream over HTTP, unpacked and SHA-256-checked, progress reports), a freshly minted token",
                "rsync_path": f"rsync daemon in the head, client `rsync {RSYNC_ARGS}`",
                "vm_stream_server_side_mb_per_s": "the boot server's own send time of the VM's stream: not comparable "
                "with the client-side figures (the VM's emulated CPU unpacks it)",
            },
        }
    finally:
        if vm is not None:
            vm.kill()
        if head is not None:
            head.stop()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
