"""The standby head cloned from the primary, end to end in a lab (`haoscar standby clone`, then a failover).

The standby is a namespace host (head2) that receives the primary's image through the real install script: the
flow runs inside head1 (fetching head1's own trimmed tree over ssh), stops because the standby must be powered on,
head2 "network-boots" (a DHCP lease from dnsmasq, its iPXE script from the boot server, then install.sh onto a loop
disk, exactly as the installer's initramfs would run it), the flow resumes and completes the installation over ssh
to head2 and the witness; HA runs on both heads and the standby takes the alias IP when the primary crashes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sshd_helper import lab_sshd

from haoscar.commands.apply import apply_spec
from haoscar.commands.nodes import delete_nodes
from haoscar.db.session import open_database
from haoscar.ha.control import request
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.installer_kernel import fetch_kernel, resolve_package
from haoscar.provision.sshkeys import ensure_identity
from haoscar.scenarios.ha_lab import dump_spec, ha_spec
from haoscar.scenarios.lab_fixtures import MakeLab, pings
from haoscar.scenarios.tinyimage import build_tiny_tree

pytestmark = pytest.mark.lab

PRIMARY, STANDBY, WITNESS, USER = "head1", "head2", "witness", "client"
CACHE = Path("/var/tmp/haoscar-test-cache/installer")
SPEC_IN_HOST = "/etc/haoscar/lab-spec.yaml"
STATE = "/var/lib/haoscar"
INSTALL_SH = Path(__file__).resolve().parents[2] / "src/haoscar/data/installer/install.sh"
# The daemons are started over ssh inside the lab hosts, detached, logging into the host's private state dir.
START = f"setsid -f {sys.executable} -m haoscar --state-dir {STATE} {{run}} >{STATE}/{{what}}.log 2>&1 </dev/null"


def haoscar(lab: Lab, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return lab.exec(
        PRIMARY, [sys.executable, "-m", "haoscar", "--state-dir", STATE, *args], timeout=timeout, check=False
    )


def clone(lab: Lab, *extra: str) -> subprocess.CompletedProcess[str]:
    return haoscar(
        lab, "standby", "clone", "--spec", SPEC_IN_HOST, "--source-root", "/srv/golden", "--start-command", START,
        "--ha-wait", "40", "--json", *extra,
    )  # fmt: skip


def add_program(tree: Path, program: str) -> None:
    """Copy a dynamically linked program of this machine and the libraries ``ldd`` names into an image tree."""
    listed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    for path in [program, *re.findall(r"(/\S+)\s+\(0x", listed)]:
        dest = tree / path.lstrip("/")
        # Never through a symlink of the tree: an absolute one would lead out of it, onto the machine.
        assert not any(parent.is_symlink() for parent in dest.parents), dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)


def collect_while_standby_asks(lab: Lab) -> subprocess.CompletedProcess[str]:
    """The first run of the flow, without --standby-mac, while the standby's firmware sends DHCP DISCOVERs."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # no pipe to fill up
        proc = lab.popen(
            PRIMARY,
            [sys.executable, "-m", "haoscar", "--state-dir", STATE, "standby", "clone", "--spec", SPEC_IN_HOST,
             "--source-root", "/srv/golden", "--start-command", START, "--json", "--wait-install", "0",
             "--collect-timeout", "60"],
            stdout=out, stderr=err,
        )  # fmt: skip
        try:
            while proc.poll() is None:
                lab.exec(STANDBY, ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "2", "-T", "1"], check=False)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def boot_standby(lab: Lab, mac: str, disk: str) -> str:
    """What the standby's firmware and installer do: DHCP, the iPXE script, install.sh onto its disk."""
    probe = lab.host_dir(STANDBY) / "run/dhcp-probe.sh"
    probe.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip" > /run/dhcp-lease\nexit 0\n')
    probe.chmod(0o755)
    lab.exec(STANDBY, ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", "/run/dhcp-probe.sh"])
    assert (lab.host_dir(STANDBY) / "run/dhcp-lease").read_text().strip() == "ip=198.18.0.2"
    script = lab.exec(STANDBY, ["wget", "-q", "-O", "-", f"http://198.18.0.1:8470/boot/{mac}.ipxe"]).stdout
    assert script.startswith("#!ipxe") and "haoscar.server=" in script, script
    listed = json.loads(haoscar(lab, "node", "list", STANDBY, "--json").stdout)
    assert listed[0]["install_state"] == "netboot", listed
    # The install credential the boot server put on the installer's kernel command line (the script was asked for
    # from the standby's own address).
    token = next(w for w in script.split() if w.startswith("haoscar.token=")).removeprefix("haoscar.token=")
    env = [
        "env", "HAOSCAR_SERVER=http://198.18.0.1:8470", f"HAOSCAR_MAC={mac}", f"HAOSCAR_TOKEN={token}",
        f"HAOSCAR_DISK={disk}",
        "HAOSCAR_TARGET=/run/haoscar-target", "HAOSCAR_NO_POWER=1", "HAOSCAR_FIRMWARE=bios",  # whatever this machine is
        "busybox", "sh", str(INSTALL_SH),
    ]  # fmt: skip
    done = lab.exec(STANDBY, env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_standby_cloned_from_the_primary_runs_ha_and_takes_over(make_lab: MakeLab, tmp_path: Path) -> None:
    spec = ha_spec(default_spec().model_copy(update={"clients": []}), profile="fast", fencing="none")
    lab = make_lab(spec)
    primary_state = lab.host_dir(PRIMARY) / STATE.lstrip("/")
    (lab.host_dir(PRIMARY) / SPEC_IN_HOST.lstrip("/")).write_text(dump_spec(spec))
    # The primary as it was before the standby existed: the cluster in its database, no standby head yet.
    db = open_database(primary_state)
    try:
        apply_spec(db, spec)
        delete_nodes(db, STANDBY)
    finally:
        db.close()
    # The primary's trimmed tree: what the standby needs to boot (busybox, kernel, initramfs) and a marker.
    golden = build_tiny_tree(fetch_kernel(resolve_package(), CACHE), lab.host_dir(PRIMARY) / "srv/golden")
    (golden / "etc/motd").write_text("cloned from head1\n")
    # The primary's ssh host key must not be cloned: the installer gives the standby fresh keys (ssh-keygen -A in
    # the new system, so the tree carries the machine's real ssh-keygen).
    add_program(golden, "/usr/bin/ssh-keygen")
    (golden / "etc/ssh").mkdir()
    (golden / "etc/ssh/ssh_host_ed25519_key").write_text("head1's own key\n")
    mac = lab.exec(STANDBY, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    identity = ensure_identity(primary_state)
    log = (tmp_path / "bootserver.log").open("wb")
    server = lab.popen(
        PRIMARY, [sys.executable, "-m", "haoscar", "--state-dir", STATE, "netboot", "serve", "--bind", "198.18.0.1"],
        stdout=log, stderr=log,
    )  # fmt: skip
    disk_file = tmp_path / "standby-disk.raw"
    with disk_file.open("wb") as handle:
        handle.truncate(160 * 1024 * 1024)
    loop = subprocess.run(
        ["losetup", "-fP", "--show", str(disk_file)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(lab_sshd(lab, PRIMARY, [identity.public_key]))
            # 1. The flow up to the standby's install: it stops and says what to do (exit 3), nothing failed.
            # The MAC is collected from the wire (Collect MAC Address): the powered-on standby keeps asking for
            # DHCP while the flow runs; nobody answers yet (dnsmasq is configured only after the MAC step).
            first = collect_while_standby_asks(lab)
            assert first.returncode == 3, first.stdout + first.stderr
            steps = {s["step"]: s for s in json.loads(first.stdout)["steps"]}
            assert [s["status"] for s in steps.values()] == ["done"] * 5 + ["waiting"], steps
            assert "power it on with network boot" in steps["install"]["detail"]
            assert f"{mac} assigned to {STANDBY}" == steps["mac"]["detail"]
            listed = json.loads(haoscar(lab, "node", "list", STANDBY, "--json").stdout)
            assert (listed[0]["role"], listed[0]["boot_mode"], listed[0]["install_state"]) == (
                "standby", "netboot", "mac-assigned",
            )  # fmt: skip

            # 2. The standby boots from the network and installs the primary's image.
            out = boot_standby(lab, mac, loop)
            assert "post-install: beep" in out
            check = "/run/check"
            lab.exec(STANDBY, ["mkdir", "-p", check])
            lab.exec(STANDBY, ["mount", "-o", "ro", f"{loop}p1", check])
            try:
                assert lab.exec(STANDBY, ["cat", f"{check}/etc/hostname"]).stdout.strip() == STANDBY
                conf = lab.exec(STANDBY, ["cat", f"{check}/etc/haoscar/node.conf"]).stdout
                assert "IP='198.18.0.2'" in conf and f"MAC='{mac}'" in conf
                assert lab.exec(STANDBY, ["cat", f"{check}/etc/motd"]).stdout == "cloned from head1\n"
                key = lab.exec(STANDBY, ["cat", f"{check}/etc/ssh/ssh_host_ed25519_key"]).stdout
                assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and "head1" not in key, key
                assert "fresh ssh host keys" in out
            finally:
                lab.exec(STANDBY, ["umount", check], check=False)

            # 3. The flow resumes: the earlier steps are not redone; Complete Installation over ssh; HA is up.
            stack.enter_context(lab_sshd(lab, STANDBY, [identity.public_key]))
            stack.enter_context(lab_sshd(lab, WITNESS, [identity.public_key]))
            second = clone(lab)
            assert second.returncode == 0, second.stdout + second.stderr
            report = json.loads(second.stdout)
            assert [s["status"] for s in report["steps"]] == ["earlier"] * 5 + ["done", "done"], report["steps"]
            complete = report["complete"]
            assert (complete["primary_state"], complete["standby_state"], complete["key_generated"]) == (
                "active", "standby", True,
            )  # fmt: skip
            # Nothing outside /etc/haoscar: lab hosts share the rest of the machine's file system.
            written = [path for host in complete["hosts"] for path in host["written"]]
            assert written and all(path.startswith("/etc/haoscar/") for path in written), written
            # Keys per purpose: both heads the same three keyrings, the witness the lease keyring only.
            key_dirs = {h: lab.host_dir(h) / "etc/haoscar/keys" for h in (PRIMARY, STANDBY, WITNESS)}
            held = {h: {k.name: k.read_bytes() for k in d.iterdir()} for h, d in key_dirs.items()}
            assert sorted(held[PRIMARY]) == ["heartbeat.key", "lease.key", "replication.key"]
            assert held[STANDBY] == held[PRIMARY]
            assert held[WITNESS] == {"lease.key": held[PRIMARY]["lease.key"]}
            assert all(k.stat().st_mode & 0o777 == 0o600 for d in key_dirs.values() for k in d.iterdir())
            assert (lab.host_dir(STANDBY) / "etc/haoscar/cluster.yaml").read_text() == dump_spec(spec)

            # 4. Idempotent: a second Complete Installation writes nothing and starts nothing.
            again = haoscar(lab, "install", "complete", "--spec", SPEC_IN_HOST, "--start-command", START, "--json")
            assert again.returncode == 0, again.stderr
            result = json.loads(again.stdout)
            assert result["changed"] is False, result
            assert all(h["was_running"] and not h["started"] for h in result["hosts"]), result["hosts"]
            status = json.loads(haoscar(lab, "ha", "status", "--json").stdout)
            assert (status["local"]["state"], status["peer"]["state"]) == ("active", "standby"), status
            listed = json.loads(haoscar(lab, "node", "list", STANDBY, "--json").stdout)
            assert (listed[0]["install_state"], listed[0]["boot_mode"]) == ("up", "localboot")

        # 5. Failover: the primary crashes; the standby owns the alias IP and the user reaches it.
        vip = str(spec.heads.primary.alias_ip)
        lab.crash(PRIMARY)
        sock = lab.host_dir(STANDBY) / "var/lib/haoscar/ha/control.sock"
        deadline = time.monotonic() + 15
        state = None
        while time.monotonic() < deadline and state != "active":
            with contextlib.suppress(Exception):
                state = request(sock, "status", timeout=1.0).get("state")
            time.sleep(0.1)
        assert state == "active", (lab.host_dir(STANDBY) / "var/lib/haoscar/ha.log").read_text()[-3000:]
        assert vip in lab.exec(STANDBY, ["ip", "-br", "addr", "show", "eth1"]).stdout
        assert pings(lab, USER, vip, deadline=5.0)
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        log.close()
        with contextlib.suppress(Exception):
            lab.exec(STANDBY, ["umount", "-R", "/run/haoscar-target"], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
