"""Issue 10, finding 1: a host on the compute network attacks the boot server (a lab host with an address of its
own, 198.18.0.150), and node01 installs through the real install script beside it.

- node01's image, record and plan, asked for without a token, with a wrong one, with node02's, or with node01's
  expired token: 403, and no byte of the image or the record;
- node01's iPXE script asked for from the intruder's address carries no token;
- forged reports (node01's MAC, no token or node02's token) change nothing about node01;
- a stream cut short by a proxy, and a stream that does not match its checksum, fail the install with the reason;
- node01, booting from its own address, gets a token in its script and installs; the token is dead afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.lab import LabInterface
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.images import ImageStore
from haoscar.provision.install_tokens import mint
from haoscar.provision.installer_build import SCRIPTS_DIR
from haoscar.provision.netboot_macs import assign_macs
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

HEAD, NODE, INTRUDER = "head1", "inst1", "intruder"
MAC1, MAC2 = "52:54:00:5e:01:11", "52:54:00:5e:01:12"
SERVER = "http://198.18.0.1:8470"
PROXY_PORT = 8471
HAOSCAR = [sys.executable, "-m", "haoscar", "--state-dir", "/var/lib/haoscar"]
FORBIDDEN = "forbidden: a valid install token for this node is required\n"

# An HTTP client run inside a lab host: prints {"status": ..., "body": ...} for one request.
CLIENT = """
import json, sys, urllib.error, urllib.request
method, url, token, data = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
headers = {"X-Haoscar-Token": token} if token else {}
body = data.encode() if data else None
if body is not None:
    headers["Content-Type"] = "application/x-www-form-urlencoded"
req = urllib.request.Request(url, data=body, headers=headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=10) as answer:
        status, text = answer.status, answer.read()
except urllib.error.HTTPError as exc:
    status, text = exc.code, exc.read()
print(json.dumps({"status": status, "body": text.decode(errors="replace")}))
"""

# A proxy inside the installing host that passes everything to the boot server but cuts the image stream short.
PROXY = """
import socket, sys, threading
limit, up = int(sys.argv[1]), ("198.18.0.1", 8470)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[2])))
server.listen(16)
def pipe(src, dst, cap):
    sent = 0
    try:
        while data := src.recv(65536):
            if cap is not None and sent + len(data) > cap:
                dst.sendall(data[: cap - sent])
                break
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def handle(client):
    first = client.recv(65536)
    upstream = socket.create_connection(up)
    upstream.sendall(first)
    cap = limit if b"/image.tar" in first.split(b"\\r\\n", 1)[0] else None
    threading.Thread(target=pipe, args=(client, upstream, None), daemon=True).start()
    pipe(upstream, client, cap)
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""


def http(lab: Lab, host: str, method: str, path: str, token: str = "", *, data: str = "") -> tuple[int, str]:
    out = lab.exec(host, [sys.executable, "-c", CLIENT, method, f"{SERVER}{path}", token, data], timeout=30)
    answer = json.loads(out.stdout)
    return int(answer["status"]), str(answer["body"])


def node_row(state: Path, name: str) -> tuple[str, str, str]:
    db = open_database(state, upgrade=False)
    try:
        with db.session() as session:
            row = session.query(Node).filter_by(name=name).one()
            return row.install_state, row.install_detail, row.boot_mode
    finally:
        db.close()


def busybox_path(directory: Path) -> str:
    """A directory of busybox applet links first on PATH: the script runs with the tools it has at boot."""
    directory.mkdir()
    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (directory / applet).symlink_to("/bin/busybox")
    return f"{directory}:/usr/sbin:/usr/bin:/sbin:/bin"


def image_tree(tree: Path) -> Path:
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("NAME=tiny\n")
    (tree / "boot").mkdir()
    (tree / "boot/vmlinuz-6.1.0-tiny").write_bytes(b"\x7fkernel" * 1000)
    (tree / "payload").write_bytes(bytes(range(256)) * (16 << 12))  # 16 MiB: a stream long enough to cut
    return tree


def boot_script(lab: Lab, host: str) -> str:
    """What iPXE does from the host's address: GET its own script."""
    return lab.exec(host, ["busybox", "wget", "-q", "-O", "-", f"{SERVER}/boot/{MAC1}.ipxe"]).stdout


def token_of(script: str) -> str:
    words = [w for w in script.split() if w.startswith("haoscar.token=")]
    assert len(words) == 1, script
    return words[0].removeprefix("haoscar.token=")


def test_only_the_installing_node_gets_its_image_and_reports(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(default_spec().model_copy(update={"clients": []}))
    state = lab.host_dir(HEAD) / "var/lib/haoscar"
    db = open_database(state)
    try:
        apply_spec(db, default_spec())
        assign_macs(db, [("node01", MAC1, "test"), ("node02", MAC2, "test")])
        other_token = mint(db, "node02")  # what node02's own script would have given node02
        expired = mint(db, "node01", ttl=60, now=datetime.now(UTC) - timedelta(seconds=120))
    finally:
        db.close()
    ImageStore(state).import_tree("oscarimage", image_tree(tmp_path / "tree"))
    assert lab.exec(HEAD, [*HAOSCAR, "netboot", "sync"], check=False).returncode == 0
    lab.add_host(NODE, [LabInterface("eth0", "private", ip="198.18.0.101", prefix=24, mac=MAC1)])
    lab.add_host(INTRUDER, [LabInterface("eth0", "private", ip="198.18.0.150", prefix=24)])
    log = (tmp_path / "bootserver.log").open("wb")
    server = lab.popen(HEAD, [*HAOSCAR, "netboot", "serve", "--bind", "198.18.0.1", "--port", "8470"], stdout=log,
                       stderr=log)  # fmt: skip
    disk_file = tmp_path / "disk.raw"
    with disk_file.open("wb") as handle:
        handle.truncate(128 << 20)
    loop = subprocess.run(["losetup", "-fP", "--show", str(disk_file)], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    proxy = None
    try:
        deadline = time.monotonic() + 20
        while lab.exec(INTRUDER, ["busybox", "wget", "-q", "-O", "/dev/null", f"{SERVER}/boot.ipxe"],
                       check=False).returncode != 0:  # fmt: skip
            assert time.monotonic() < deadline, "the boot server did not start"
            time.sleep(0.2)

        # (a) The intruder: node01's script carries no token for it; nothing of node01's with a bad token.
        status, script = http(lab, INTRUDER, "GET", f"/boot/{MAC1}.ipxe")
        assert status == 200 and "haoscar.server=" in script and "haoscar.token" not in script, script
        for token in ("", "not-a-token", other_token, expired):
            for path in (f"/install/{MAC1}/image.tar", f"/node/{MAC1}", f"/install/{MAC1}/plan"):
                status, body = http(lab, INTRUDER, "GET", path, token)
                assert (status, body) == (403, FORBIDDEN), (token, path, status, body[:200])
        # (b) Forged reports with node01's MAC change nothing.
        before = node_row(state, "node01")
        assert before == ("mac-assigned", "", "netboot")
        for token in ("", other_token):
            for path, data in ((f"/install/{MAC1}/done", "seconds=5"),
                               (f"/install/{MAC1}/failed", "stage=disk&reason=forged"),
                               (f"/install/{MAC1}/progress", "stage=image&percent=50")):  # fmt: skip
                assert http(lab, INTRUDER, "POST", path, token, data=data) == (403, FORBIDDEN), (token, path)
        assert node_row(state, "node01") == before
        assert not (state / "install/node01.json").exists()

        # node01 boots from its own address: its script carries a token, which opens node01's things only.
        token = token_of(boot_script(lab, NODE))
        assert node_row(state, "node01")[0] == "netboot"
        assert http(lab, NODE, "GET", f"/install/{MAC2}/plan", token) == (403, FORBIDDEN)
        assert http(lab, INTRUDER, "GET", f"/install/{MAC1}/plan", expired) == (403, FORBIDDEN)
        status, plan = http(lab, INTRUDER, "GET", f"/install/{MAC1}/plan", token)  # a sniffed token works
        assert status == 200 and "IMAGE_SHA256=" in plan

        path = busybox_path(tmp_path / "bin")

        def install(server: str, token: str) -> subprocess.CompletedProcess[str]:
            env = [f"PATH={path}", f"HAOSCAR_SERVER={server}", f"HAOSCAR_TOKEN={token}", f"HAOSCAR_MAC={MAC1}",
                   f"HAOSCAR_DISK={loop}", "HAOSCAR_NO_POWER=1", "HAOSCAR_FIRMWARE=bios",
                   f"HAOSCAR_TARGET={tmp_path / 'target'}"]  # fmt: skip
            argv = ["env", *env, "busybox", "sh", str(SCRIPTS_DIR / "install.sh")]
            return lab.exec(NODE, argv, check=False, timeout=120)

        # (d) A stream cut after 4 MiB (a proxy in node01's host): the install fails, saying why.
        proxy = lab.popen(NODE, [sys.executable, "-c", PROXY, str(4 << 20), str(PROXY_PORT)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)
        cut = install(f"http://127.0.0.1:{PROXY_PORT}", token)
        assert cut.returncode == 1, cut.stdout + cut.stderr
        state1, detail1, _ = node_row(state, "node01")
        assert state1 == "failed", detail1
        assert detail1.startswith(f"image: receiving oscarimage from http://127.0.0.1:{PROXY_PORT} failed"), detail1
        # The failure report revoked the token: the installer stopped, a new boot gets a new one.
        assert http(lab, NODE, "GET", f"/install/{MAC1}/plan", token) == (403, FORBIDDEN)

        # A complete stream that does not match the checksum the head computed: refused, not installed.
        version_dir = ImageStore(state).current_root("oscarimage").parent
        sums = version_dir / "tar.sha256"
        real = sums.read_text()
        sums.write_text("0" * 64 + " 1\n")
        damaged = install(SERVER, token_of(boot_script(lab, NODE)))
        assert damaged.returncode == 1, damaged.stdout + damaged.stderr
        state2, detail2, _ = node_row(state, "node01")
        assert state2 == "failed", detail2
        assert detail2.startswith("image: the image stream of oscarimage does not match its checksum"), detail2
        sums.write_text(real)

        # (c) The legitimate install still works; afterwards its token opens nothing.
        token = token_of(boot_script(lab, NODE))
        done = install(SERVER, token)
        assert done.returncode == 0, done.stdout + done.stderr
        assert node_row(state, "node01") == ("installed", "", "localboot")
        assert http(lab, NODE, "GET", f"/install/{MAC1}/plan", token) == (403, FORBIDDEN)
        lab.exec(NODE, ["mkdir", "-p", "/run/check"])
        lab.exec(NODE, ["mount", "-o", "ro", f"{loop}p1", "/run/check"])
        try:
            assert lab.exec(NODE, ["cat", "/run/check/etc/hostname"]).stdout.strip() == "node01"
            assert lab.exec(NODE, ["cmp", "/run/check/payload", str(tmp_path / "tree/payload")],
                            check=False).returncode == 0  # fmt: skip
        finally:
            lab.exec(NODE, ["umount", "/run/check"], check=False)
        logged = (tmp_path / "bootserver.log").read_text()
        assert "refused GET /install/52:54:00:5e:01:11/image.tar from 198.18.0.150" in logged
        assert "Traceback" not in logged, logged
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # as InstallHead.stop: a loaded machine may outlast aiohttp's shutdown
            server.kill()
            server.wait()
        log.close()
        lab.exec(NODE, ["umount", "-R", str(tmp_path / "target")], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
