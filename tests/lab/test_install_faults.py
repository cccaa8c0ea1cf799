"""The install script's failure reports, run in a namespace host against the real boot server: a disk too small
for the image and an image missing on the server each reach the head node as ``failed: STAGE: reason``, and the
disk is left untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.lab import LabInterface
from haoscar.lab.defaults import default_spec
from haoscar.provision.images import ImageStore
from haoscar.provision.install_tokens import mint
from haoscar.provision.installer_build import SCRIPTS_DIR
from haoscar.provision.netboot_macs import assign_macs
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD = "head1"
MAC1 = "52:54:00:5e:00:11"
MAC2 = "52:54:00:5e:00:12"
HAOSCAR = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar"]


def busybox_path(directory: Path) -> str:
    """A directory of busybox applet links, first on PATH: the script runs with the tools it has at boot."""
    directory.mkdir()
    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (directory / applet).symlink_to("/bin/busybox")
    return f"{directory}:/usr/sbin:/usr/bin:/sbin:/bin"


def states(state: Path) -> dict[str, tuple[str, str]]:
    db = open_database(state, upgrade=False)
    try:
        with db.session() as session:
            return {n.name: (n.install_state, n.install_detail) for n in session.query(Node).all()}
    finally:
        db.close()


def test_disk_too_small_and_missing_image_are_reported_to_the_head(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    state = lab.host_dir(HEAD) / "var/lib/haoscar"
    db = open_database(state)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", MAC1, "test"), ("node02", MAC2, "test")])
        # The install credentials the nodes' iPXE scripts would carry (the installer host has neither's address).
        tokens = {MAC1: mint(db, "node01"), MAC2: mint(db, "node02")}
    finally:
        db.close()
    # node01's image (oscarimage) is in the store; node02's would be serverimage, which is not.
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text("NAME=tiny\n")
    (tree / "payload").write_bytes(b"\1" * (4 << 20))
    ImageStore(state).import_tree("oscarimage", tree)
    assert lab.exec(HEAD, [*HAOSCAR, "node", "set", "node02", "--image", "serverimage"], check=False).returncode == 0

    lab.add_host("inst1", [LabInterface("eth0", "private", ip="198.18.0.150", prefix=24, mac=MAC1)])
    disk = tmp_path / "disk.img"
    with disk.open("wb") as handle:
        handle.truncate(16 << 20)
    path = busybox_path(tmp_path / "bin")
    server = lab.popen(
        HEAD,
        [*HAOSCAR, "netboot", "serve", "--bind", "198.18.0.1", "--port", "8470"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lab.exec(
            "inst1",
            [
                "busybox",
                "sh",
                "-c",
                "for i in $(seq 50); do wget -q -O /dev/null "
                "http://198.18.0.1:8470/boot.ipxe && exit 0; sleep 0.2; done; exit 1",
            ],
            check=False,
        )

        def install(mac: str) -> subprocess.CompletedProcess[str]:
            env = [
                f"PATH={path}",
                "HAOSCAR_SERVER=http://198.18.0.1:8470",
                f"HAOSCAR_MAC={mac}",
                f"HAOSCAR_TOKEN={tokens[mac]}",
                f"HAOSCAR_DISK={disk}",
                "HAOSCAR_NO_POWER=1",
                f"HAOSCAR_TARGET={tmp_path / 'target'}",
            ]
            argv = ["env", *env, "busybox", "sh", str(SCRIPTS_DIR / "install.sh")]
            return lab.exec("inst1", argv, check=False, timeout=60)

        small = install(MAC1)
        assert small.returncode == 1, small.stdout + small.stderr
        missing = install(MAC2)
        assert missing.returncode == 1, missing.stdout + missing.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    found = states(state)
    state1, detail1 = found["node01"]
    assert state1 == "failed"
    assert detail1.startswith(f"disk: disk too small: {disk} has 16 MiB, image oscarimage needs at least "), detail1
    state2, detail2 = found["node02"]
    assert state2 == "failed"
    assert detail2.startswith("image: image serverimage is missing on the server: image 'serverimage' is not in"), (
        detail2
    )
    with disk.open("rb") as handle:
        assert handle.read(1 << 20) == bytes(1 << 20), "the installer wrote to a disk it found too small"
