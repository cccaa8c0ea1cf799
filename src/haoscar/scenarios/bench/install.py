"""``haoscar bench install``: one VM installed over the network in a fresh lab, timed stage by stage.

The VM (qemu, TCG) network-boots from dnsmasq and the boot server in the lab's head host and installs the tiny
image (post-install action: shutdown). Reported: the whole install (VM start to power-off), the time in each stage
as the head saw the reports arrive, the image stream's throughput as the boot server measured it, and in the same
run the same image tree copied with plain rsync (``rsync -a`` from an rsync daemon in the head) and with the same
HTTP tar stream into a namespace host: what the network path can do without the VM's emulated CPU.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
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
from haoscar.scenarios.install_lab import InstallHead, prepare_head
from haoscar.scenarios.install_vm import Vm, make_disk
from haoscar.scenarios.lab_fixtures import unique_lab_name

NODE, MAC = "node01", "52:54:00:be:00:01"
COPY_HOST, COPY_IP = "copy1", "198.18.0.160"
RSYNC_PORT = 8873
INSTALL_TIMEOUT = 300.0


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


def _timed(lab: Lab, host: str, script: str) -> float:
    started = time.monotonic()
    result = lab.exec(host, ["sh", "-c", script], timeout=300, check=False)
    if result.returncode != 0:
        raise UserError(f"copy in {host} failed: {result.stderr.strip()[-500:]}")
    return time.monotonic() - started


def _copy_rates(head: InstallHead, work: Path) -> dict[str, float]:
    """The same image tree into a namespace host: plain rsync from an rsync daemon, and the HTTP tar stream."""
    lab = head.lab
    lab.add_host(COPY_HOST, [LabInterface("eth0", "private", ip=COPY_IP, prefix=24)])
    root = ImageStore(head.state).current_root("oscarimage")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    conf = work / "rsyncd.conf"
    conf.write_text(
        f"pid file = {work}/rsyncd.pid\nuse chroot = no\n[image]\n  path = {root}\n  read only = yes\n  uid = root\n"
        "  gid = root\n"
    )
    daemon = lab.popen(
        head.head,
        ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--address={head.head_ip}", f"--port={RSYNC_PORT}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        dst = work / "dst"
        url = f"rsync://{head.head_ip}:{RSYNC_PORT}"
        wait = f"for i in $(seq 50); do rsync {url}/ >/dev/null 2>&1 && break; sleep 0.2; done"
        lab.exec(COPY_HOST, ["sh", "-c", wait], timeout=30, check=False)
        rsync_s = _timed(lab, COPY_HOST, f"rm -rf {dst} && rsync -a {url}/image/ {dst}/")
        token = _install_token(head)  # the installed node's own token was revoked at done: a fresh one
        stream = (
            f"busybox wget -q -O - --header 'X-Haoscar-Token: {token}' {head.server_url}/install/{MAC}/image.tar"
            f" | tar -x -C {dst}"
        )
        http_s = _timed(lab, COPY_HOST, f"rm -rf {dst} && mkdir {dst} && {stream}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    return {"bytes": size, "rsync_s": rsync_s, "http_s": http_s}


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
        return {
            "install_s": round(install_s, 2),
            "image_mb_per_s": round(sent / 1e6 / seconds, 2) if seconds > 0 else None,
            "rsync_mb_per_s": round(mb / copies["rsync_s"], 2),
            "http_to_namespace_mb_per_s": round(mb / copies["http_s"], 2),
            "image_mb": round(sent / 1e6, 2),
            "stages_s": stages,
            "vm": "qemu TCG, 1 vCPU, virtio-net on the lab bridge",
        }
    finally:
        if vm is not None:
            vm.kill()
        if head is not None:
            head.stop()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
