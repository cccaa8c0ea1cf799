"""/home over NFS on namespace compute nodes: the lab's userspace NFSv4 client (lab/nfs_fuse.py over libnfs) mounts
the heads' NFS-Ganesha export (the ``nfs-ganesha`` HA service, on the private alias) with ``Lab.mount_nfs``.

Files written on one node are read on another with their mode and owner; rename, unlink, append, chmod of a
directory and a 5 MB round trip work as on a kernel mount; root is squashed. Across a crash of the active head a
read of an existing file blocks, then returns the same content from the standby (a ``hard`` mount): its duration is
printed as ``nfs_client_failover_read_s`` (not asserted: the machine is shared).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.lab import nfs_mounts
from haoscar.scenarios.ha_lab import HaLab, ha_lab, wait_until
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.scenarios.nfs_lab import nfs_lab_spec

pytestmark = pytest.mark.lab

ALIAS = "198.18.0.3"
UID = 4243
HOME = f"/home/u{UID}"
NODES = ("node01", "node02")


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaLab]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    where = tmp_path_factory.mktemp("nfsclient")
    spec = nfs_lab_spec(where, ALIAS)
    with ha_lab(spec, unique_lab_name("nfc"), where, replication=True, replication_ack_timeout_s=1.0) as lab:
        home = lab.lab.host_dir(lab.primary) / HOME.lstrip("/")  # what `user add` makes on the active head
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, UID, UID)
        for node in NODES:
            assert lab.lab.mount_nfs(node, ALIAS, "/home", "/home") > 0
        yield lab


def _as_user(ha: HaLab, node: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "sh", "-c", script]
    return ha.lab.exec(node, argv, check=False, timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stdout}{result.stderr}"
    return result.stdout


def test_what_one_node_writes_another_reads_with_mode_and_owner(ha: HaLab) -> None:
    _ok(_as_user(ha, "node01", f"cd {HOME} && echo one > notes && echo two >> notes && chmod 640 notes"))
    _ok(_as_user(ha, "node01", f"mkdir {HOME}/.ssh && chmod 700 {HOME}/.ssh && echo key > {HOME}/.ssh/id"))
    assert _ok(_as_user(ha, "node02", f"cat {HOME}/notes")) == "one\ntwo\n"
    stats = _ok(_as_user(ha, "node02", f"stat -c '%n %a %u %g' {HOME}/notes {HOME}/.ssh"))
    assert stats.split("\n")[:2] == [f"{HOME}/notes 640 {UID} {UID}", f"{HOME}/.ssh 700 {UID} {UID}"]
    assert _ok(_as_user(ha, "node02", f"ls -a {HOME}")).split() == [".", "..", ".ssh", "notes"]
    on_disk = ha.lab.host_dir(ha.primary) / HOME.lstrip("/") / "notes"
    assert on_disk.read_text() == "one\ntwo\n" and on_disk.stat().st_uid == UID

    _ok(_as_user(ha, "node02", f"mv {HOME}/notes {HOME}/renamed && touch -m -d @1700000000 {HOME}/renamed"))
    assert _ok(_as_user(ha, "node01", f"cat {HOME}/renamed; stat -c %Y {HOME}/renamed")) == "one\ntwo\n1700000000\n"
    assert _as_user(ha, "node01", f"cat {HOME}/notes").returncode != 0
    _ok(_as_user(ha, "node01", f"rm {HOME}/renamed {HOME}/.ssh/id && rmdir {HOME}/.ssh"))
    assert _ok(_as_user(ha, "node02", f"ls -A {HOME}")) == ""


def test_root_is_squashed_and_a_home_is_private(ha: HaLab) -> None:
    denied = ha.lab.exec("node01", ["sh", "-c", f"echo x > {HOME}/by-root"], check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    _ok(_as_user(ha, "node01", f"echo secret > {HOME}/private && chmod 600 {HOME}/private"))
    other = ha.lab.exec(
        "node02", ["setpriv", "--reuid=4244", "--regid=4244", "--clear-groups", "cat", f"{HOME}/private"], check=False
    )
    assert other.returncode != 0 and "Permission denied" in other.stderr


def test_a_5_mb_file_round_trips_intact(ha: HaLab) -> None:
    made = _ok(_as_user(ha, "node01", f"head -c 5000000 /dev/urandom > {HOME}/big && sha256sum < {HOME}/big"))
    assert _ok(_as_user(ha, "node02", f"sha256sum < {HOME}/big")) == made
    assert _ok(_as_user(ha, "node02", f"stat -c %s {HOME}/big")) == "5000000\n"
    _ok(_as_user(ha, "node02", f"rm {HOME}/big"))


def _in_sync(ha: HaLab, active: str) -> bool:
    repl = (ha.status(active, timeout=1.0) or {}).get("replication") or {}
    current = not repl.get("standby_stale") and bool(repl.get("confirmed_current"))
    return repl.get("files_pending") == 0 and current and bool(repl.get("db_connected"))


# Two libnfs connections of one process, made within one second (the script starts just after a second begins),
# each creating a file as the user, then each creating another.
TWO_CONNECTIONS = f"""
import os, time
from haoscar.lab.nfs_client import Connection, NfsError
from haoscar.lab.nfs4_setattr import Creds
time.sleep(1.05 - time.time() % 1)
started = int(time.time())
conns = [Connection("{ALIAS}", "/home") for _ in range(2)]
made = int(time.time())
for conn in conns:
    conn.as_user(Creds({UID}, {UID}))
for step in ("first", "second"):
    for number, conn in enumerate(conns):
        try:
            conn.open("/u{UID}/twoconn-%d-%d-%s" % (os.getpid(), number, step), os.O_WRONLY | os.O_CREAT, 0o644)
            print(number, step, "created")
        except NfsError as exc:
            print(number, step, exc.strerror)
print("within one second:", made == started)
"""


def test_two_connections_made_in_one_second_are_two_nfs_clients(ha: HaLab) -> None:
    """libnfs 4.0 names its NFSv4 client "Libnfs pid:PID SECONDS": a second connection of the same process within
    that second took the first's client ID over, and the first's next create failed with NFS4ERR_EXPIRED, which
    libnfs reports as ERANGE, "Numerical result out of range" (seen once in CI as a failed write in /home). Each
    connection now names its own client."""
    script = TWO_CONNECTIONS
    out = ha.lab.exec("node01", [sys.executable, "-c", script], timeout=60).stdout.splitlines()
    if out[-1] != "within one second: True":  # a loaded machine took a second over two mounts: not the case shown
        out = ha.lab.exec("node01", [sys.executable, "-c", script], timeout=60).stdout.splitlines()
    created = [f"{number} {step} created" for step in ("first", "second") for number in (0, 1)]
    assert out == [*created, "within one second: True"], out
    _ok(_as_user(ha, "node01", f"rm {HOME}/twoconn-*"))


def test_a_read_blocks_across_a_head_crash_and_then_works(ha: HaLab) -> None:
    active, standby = ha.primary, ha.standby
    _ok(_as_user(ha, "node01", f"echo survives > {HOME}/kept"))
    copy = ha.lab.host_dir(standby) / HOME.lstrip("/") / "kept"
    assert wait_until(lambda: copy.exists() and copy.read_text() == "survives\n", 20, 0.1)
    assert wait_until(lambda: _in_sync(ha, active), 60, 0.1), ha.logs(active)

    crashed = time.monotonic()
    ha.lab.crash(active)
    read = _as_user(ha, "node01", f"cat {HOME}/kept", timeout=120)  # blocks until the standby serves
    print(f"nfs_client_failover_read_s={time.monotonic() - crashed:.2f}")  # shown with -s; never asserted
    assert _ok(read) == "survives\n"
    assert (ha.status(standby) or {})["state"] == "active"
    assert nfs_mounts.status(ha.lab, "node01", "/home")["reconnects"] >= 1
    _ok(_as_user(ha, "node02", f"echo new > {HOME}/after"))  # node02 recovers too, and writes to the new head
    assert (ha.lab.host_dir(standby) / HOME.lstrip("/") / "after").read_text() == "new\n"


def test_unmount_stops_the_client(ha: HaLab) -> None:
    pid = nfs_mounts.records(ha.lab)[-1].pid
    ha.lab.unmount_nfs("node02", "/home")
    assert not Path(f"/proc/{pid}").exists()
    assert " /home fuse" not in ha.lab.exec("node02", ["cat", "/proc/mounts"]).stdout
    with pytest.raises(UserError, match="no NFS mount on /home"):
        ha.lab.unmount_nfs("node02", "/home")
