"""Finding 5 (nothing is encrypted): what crosses the wire between the heads while files and database changes
replicate, captured on the standby's interfaces as an ARP spoofer on the link would receive it, holds none of the
data: both replication channels are TLS. (A plain datagram carrying a control marker is captured, so the capture
does see plaintext when there is any.)"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.replication.config import repl_config
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import ReplLab, db_messages, repl_spec

pytestmark = pytest.mark.lab

# Every frame on every interface of the host it runs in, for argv[1] seconds; then: frames, bytes, and which of
# the markers (argv[2:]) appeared anywhere in them.
SNIFF = r"""
import socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
sock.settimeout(0.2)
markers = [m.encode() for m in sys.argv[2:]]
seen, frames, size, tail = set(), 0, 0, b""
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data = sock.recv(65535)
    except TimeoutError:
        continue
    frames, size = frames + 1, size + len(data)
    window = tail + data
    seen |= {m for m in markers if m in window}
    tail = data[-64:]
print(frames, size, " ".join(sorted(m.decode() for m in seen)) or "-", flush=True)
"""


def test_replication_traffic_carries_no_plaintext(make_lab: MakeLab) -> None:
    rl = ReplLab(make_lab(), repl_spec(default_spec()))
    rl.setup()
    file_marker, db_marker, control = (f"{what}-{secrets.token_hex(8)}" for what in ("FILEDATA", "DBROW", "PLAIN"))
    standby_ip = str(repl_config(rl.spec, rl.standby, rl.state_dir(rl.standby)).local_ip)
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        sniffer = rl.lab.popen(
            rl.standby, [sys.executable, "-c", SNIFF, "8", file_marker, db_marker, control],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert sniffer.stdout is not None and sniffer.stdout.readline() == "ready\n"
        # The positive control: a plain datagram with its marker, from the active head to the standby.
        send = (
            "import socket, sys; socket.socket(type=socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), (sys.argv[2], 9))"
        )
        rl.lab.exec(rl.primary, [sys.executable, "-c", send, control, standby_ip])
        # A file of 256 KiB of the marker, and a database change carrying the other one.
        secret = rl.path(rl.primary, "/home/alice/secret.txt")
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text((file_marker + "\n") * (256 * 1024 // (len(file_marker) + 1)))
        db = open_database(rl.state_dir(rl.primary))
        with db.session() as session:
            record_event(session, "test", db_marker)
        db.close()
        assert db_marker in db_messages(rl.state_dir(rl.standby), "DBROW-")  # acknowledged: on the standby
        mirror = rl.path(rl.standby, "/home/alice/secret.txt")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (mirror.exists() and mirror.read_text() == secret.read_text()):
            time.sleep(0.05)
        assert mirror.read_text() == secret.read_text()  # the file crossed the wire
        out, err = sniffer.communicate(timeout=30)
        _frames, size, seen = out.split()
        assert int(size) > 256 * 1024, out  # the file's bytes went through the capture
        assert seen == control, (out, err)  # the plain datagram is visible; neither the file nor the row is
    finally:
        rl.stop_all()
