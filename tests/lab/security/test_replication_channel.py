"""Finding 6, the database channel, attacked in a lab from the active head's own address (a local unprivileged user
there, or someone spoofing it on the link): a replayed hello (a recording of an earlier session) does not reset
the live session, and a storm of connections that never authenticate is capped (those beyond the cap are closed at
once, reported once, not once each); meanwhile every write on the active head is still on the standby before its
commit returns. (Other addresses are refused before anything is read: the address check.)"""

from __future__ import annotations

import sys
import time

import pytest

from haoscar.commands.wiring import open_cluster_database as open_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.replication.config import repl_config
from haoscar.replication.dbtarget import MAX_PREAUTH
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import HOST_KEY, ReplLab, db_messages, repl_spec

pytestmark = pytest.mark.lab

# Inside the active head: a hello signed with the real key, as a recording of an earlier session would be. The
# channel is TLS with the cluster CA (a recording of it cannot be replayed at all), so this replay even uses the
# head's own certificate: the HMAC session inside must still hold.
REPLAY = r"""
import socket, ssl, sys, time
from pathlib import Path
from haoscar.keys import load_key
from haoscar.replication.config import derived_secret
from haoscar.replication.dbwire import pack
from haoscar.tlsca import client_context, node_files
body = {"op": "hello", "node": sys.argv[4], "nonce": "ab" * 16}
hello = pack(derived_secret(load_key(Path(sys.argv[1])), "db"), b"hello", body)
tls = Path("/etc/haoscar/tls")
raw = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=30)
sock = client_context(tls / "ca.crt", node_files(tls, sys.argv[4])).wrap_socket(raw, server_hostname=sys.argv[2])
sock.sendall(hello)
print("sent", flush=True)
got, started = b"", time.monotonic()
while True:
    try:
        chunk = sock.recv(65536)
    except (ssl.SSLError, OSError):
        break
    if not chunk:
        break
    got += chunk
print(len(got), round(time.monotonic() - started, 1))
"""

# A local user on the active head (the peer's own address, so past the address check): 20 connections that never
# authenticate; how many the standby closes at once (beyond its cap), without waiting for the handshake timeout.
STORM = r"""
import socket, sys
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) for _ in range(20)]
closed = 0
for sock in socks:
    sock.settimeout(2.0)
    try:
        closed += sock.recv(1) == b""
    except TimeoutError:
        pass
print(closed)
"""


def test_a_replayed_hello_and_a_connection_storm_do_not_stop_synchronous_replication(make_lab: MakeLab) -> None:
    spec = repl_spec(default_spec())
    rl = ReplLab(make_lab(), spec)
    rl.setup()
    link = repl_config(spec, rl.standby, rl.state_dir(rl.standby))  # where the standby's channel listens
    standby_ip, port = str(link.local_ip), str(link.db_port)
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        replay = rl.lab.popen(
            rl.primary, [sys.executable, "-c", REPLAY, HOST_KEY, standby_ip, port, rl.primary],
            stdout=-1, stderr=-1, text=True,
        )  # fmt: skip
        assert replay.stdout is not None and replay.stdout.readline() == "sent\n"  # holding a pre-auth slot
        storm = rl.lab.popen(
            rl.primary, [sys.executable, "-c", STORM, standby_ip, port], stdout=-1, stderr=-1, text=True
        )
        time.sleep(0.5)
        for i in range(10):
            db = open_database(rl.state_dir(rl.primary))
            with db.session() as session:
                record_event(session, "test", f"during-attack-{i}")
            db.close()
            # Acknowledged means on the standby's disk already.
            assert f"during-attack-{i}" in db_messages(rl.state_dir(rl.standby), "during-attack-")
            time.sleep(0.3)
        replay_out, replay_err = replay.communicate(timeout=30)
        storm_out, storm_err = storm.communicate(timeout=30)
        assert replay.returncode == 0, replay_err
        received, _seconds = replay_out.split()
        assert int(received) > 0, replay_err  # it got a welcome, and then the standby hung up on it
        assert storm.returncode == 0, storm_err
        assert int(storm_out) >= 20 - MAX_PREAUTH - 1  # all but the few the cap allows (one is the replay's)
        status = rl.status(rl.primary)
        assert status is not None and status["db_connected"] and not status["standby_stale"]
        events = rl.events(rl.standby)
        assert any(e["kind"] == "replication.auth_failed" and "replayed" in e["message"] for e in events)
        rejected = [e for e in events if e["kind"] == "replication.rejected"]
        # Reported, but not once per connection: the storm must not become an alert storm.
        assert 1 <= len(rejected) <= 2
        assert not any(e["kind"] == "replication.disconnected" for e in events)
    finally:
        rl.stop_all()
