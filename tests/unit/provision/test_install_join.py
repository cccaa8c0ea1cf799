"""What the installer writes so that a node joins the cluster (docs/install.md "Joining the cluster"): /home over
NFS from the heads' service address, time from it, munged with the cluster's key, slurmd configless from the
controller there; and only the parts whose programs the image has."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision.install_plan import install_plan
from haoscar.provision.installer_build import SCRIPTS_DIR
from haoscar.provision.netboot_macs import assign_macs
from haoscar.provision.nfs_ganesha import client_mounts
from haoscar.provision.nfs_ganesha_client import UNIT_PATH, node_files
from haoscar.provision.slurm_conf import host_dirs
from haoscar.spec.topology import compute_facing_address

MAC = "52:54:00:aa:00:01"
PROGRAMS = ("sbin/mount.nfs", "lib/systemd/systemd-timesyncd", "usr/sbin/munged", "usr/sbin/slurmd")


def join(target: Path, plan: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = f'HAOSCAR_LIB=1 . "{SCRIPTS_DIR / "install.sh"}"\nTARGET="$T"\nW="$S"\njoin_cluster'
    scratch = target / ".scratch"  # the installer's private scratch directory (W)
    scratch.mkdir(exist_ok=True)
    env = {"T": str(target), "S": str(scratch), "PATH": os.environ["PATH"], **plan}
    return subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, env=env, check=False)


def image_with(target: Path, programs: tuple[str, ...]) -> None:
    (target / "etc/default").mkdir(parents=True)
    (target / "etc/fstab").write_text("UUID=1 / ext4 errors=remount-ro 0 1\n")
    for program in programs:
        (target / program).parent.mkdir(parents=True, exist_ok=True)
        (target / program).write_text("")


NFS_FSTAB = (
    "198.18.0.3:/home /home nfs4 rw,hard,proto=tcp,timeo=50,retrans=3,_netdev 0 0\n"
    "198.18.0.3:/srv/data /srv/data nfs4 ro,hard 0 0"
)
PLAN = {
    "SERVICE_ADDRESS": "198.18.0.3",
    "NFS_FSTAB": NFS_FSTAB,
    "SLURMCTLD_PORT": "6817",
    "SLURM_DIRS": " ".join(host_dirs()),
}


def test_a_full_image_joins_through_the_service_address(tmp_path: Path) -> None:
    image_with(tmp_path, PROGRAMS)
    done = join(tmp_path, PLAN)
    assert done.returncode == 0, done.stderr
    fstab = (tmp_path / "etc/fstab").read_text().splitlines()
    assert fstab == ["UUID=1 / ext4 errors=remount-ro 0 1", *NFS_FSTAB.splitlines()]  # the root line stays first
    assert (tmp_path / "home").is_dir() and (tmp_path / "srv/data").is_dir()
    timesync = (tmp_path / "etc/systemd/timesyncd.conf.d/haoscar.conf").read_text()
    assert "NTP=198.18.0.3\n" in timesync and "FallbackNTP=\n" in timesync  # the heads only, nothing outside
    assert (tmp_path / "etc/default/munge").read_text() == 'OPTIONS="--key-file=/etc/haoscar/slurm/munge.key"\n'
    assert (tmp_path / "etc/default/slurmd").read_text() == 'SLURMD_OPTIONS="--conf-server 198.18.0.3:6817"\n'
    dropin = (tmp_path / "etc/systemd/system/slurmd.service.d/haoscar.conf").read_text()
    assert "ConditionPathExists=\n" in dropin  # Debian's unit would wait for an /etc/slurm/slurm.conf forever
    for directory in host_dirs():
        if directory.startswith("/run/"):
            assert f"d {directory} " in (tmp_path / "etc/tmpfiles.d/haoscar-slurm.conf").read_text()
        else:
            assert (tmp_path / directory.lstrip("/")).is_dir()


def test_an_image_without_the_join_packages_gets_none_of_their_files(tmp_path: Path) -> None:
    image_with(tmp_path, ())
    done = join(tmp_path, PLAN)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc/fstab").read_text() == "UUID=1 / ext4 errors=remount-ro 0 1\n"
    assert not (tmp_path / "etc/systemd").exists()
    assert sorted(p.name for p in (tmp_path / "etc/default").iterdir()) == []


def test_without_a_service_address_the_node_is_installed_but_does_not_join(tmp_path: Path) -> None:
    image_with(tmp_path, PROGRAMS)
    done = join(tmp_path, {**PLAN, "SERVICE_ADDRESS": ""})
    assert done.returncode == 0, done.stderr
    assert "will not join" in done.stdout
    assert (tmp_path / "etc/fstab").read_text() == "UUID=1 / ext4 errors=remount-ro 0 1\n"


def test_the_plan_names_the_compute_facing_address(tmp_path: Path) -> None:
    spec = default_spec()
    db = open_database(tmp_path)
    try:
        apply_spec(db, spec)
        assign_macs(db, [("node01", MAC, "test")])
        plan = install_plan(db, tmp_path, MAC, munge_key_path=tmp_path / "none")
    finally:
        db.close()
    assert plan.service_address == str(compute_facing_address(spec))
    assert plan.nfs_fstab.splitlines() == [mount.fstab_line() for mount in client_mounts(spec)]
    assert plan.nfs_fstab.startswith(f"{plan.service_address}:/home /home nfs4 ")
    assert "hard" in plan.nfs_fstab.split()[3].split(",")
    assert (plan.slurmctld_port, plan.slurm_dirs.split()) == (6817, host_dirs())
    assert f"SERVICE_ADDRESS={plan.service_address}\n" in plan.as_shell()


def test_the_plan_carries_the_injected_accounts_script_and_none_without_one(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", MAC, "test")])
        with_script = install_plan(db, tmp_path, MAC, tmp_path / "none", accounts=lambda: "useradd alice\n")
        without = install_plan(db, tmp_path, MAC, tmp_path / "none")
    finally:
        db.close()
    assert base64.b64decode(with_script.accounts_script).decode() == "useradd alice\n"
    assert without.accounts_script == ""


def test_an_image_without_bash_is_installed_without_the_accounts(tmp_path: Path) -> None:
    image_with(tmp_path, ())
    script = f'HAOSCAR_LIB=1 . "{SCRIPTS_DIR / "install.sh"}"\nTARGET="$T"\ninstall_accounts'
    env = {"T": str(tmp_path), "PATH": os.environ["PATH"], "IMAGE": "tiny", "ACCOUNTS_SCRIPT": "ZXhpdCAx"}
    done = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "has no bash" in done.stdout
    assert not (tmp_path / "run/haoscar-accounts.sh").exists()


def test_the_nfs_remount_agent_reaches_the_node_enabled(tmp_path: Path) -> None:
    spec = default_spec()
    db = open_database(tmp_path / "state")
    try:
        apply_spec(db, spec)
        assign_macs(db, [("node01", MAC, "test")])
        plan = install_plan(db, tmp_path / "state", MAC, tmp_path / "none")
    finally:
        db.close()
    target = tmp_path / "target"
    image_with(target, PROGRAMS)
    done = join(target, {**PLAN, "NODE_FILES": plan.node_files})
    assert done.returncode == 0, done.stderr
    for path, (content, mode) in node_files(spec).items():
        installed = target / path.lstrip("/")
        assert (installed.read_text(), installed.stat().st_mode & 0o7777) == (content, mode)
    unit = UNIT_PATH.rsplit("/", 1)[1]
    assert os.readlink(target / "etc/systemd/system/multi-user.target.wants" / unit) == UNIT_PATH
