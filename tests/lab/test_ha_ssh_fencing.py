"""``fencing: ssh`` for real: without a witness the standby may take over only after fencing its silent peer; here
the fence is ssh into the primary's lab host (a private sshd there) running a harmless, observable command: it
takes the primary's public link down and leaves a marker file. Nothing outside the lab host is touched."""

from __future__ import annotations

import os
import time

import pytest
from sshd_helper import lab_sshd

from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab, down_lab
from haoscar.provision.sshkeys import ensure_identity
from haoscar.scenarios.ha_lab import start_ha
from haoscar.scenarios.lab_fixtures import pings, unique_lab_name
from haoscar.scenarios.owner_sampler import OwnerSampler

pytestmark = pytest.mark.lab

MARKER = "var/lib/haoscar/fenced-by-ssh"


def test_ssh_fencing_runs_its_command_on_the_peer_before_the_takeover(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = default_spec()
    primary, standby = spec.heads.primary, spec.heads.standby
    name = unique_lab_name("hs")
    tmp_path = tmp_path_factory.mktemp("hs")  # short: the daemons' control sockets live under it (AF_UNIX limit)
    lab = Lab.up(spec, name, tmp_path)
    try:
        # the standby's own key, in its private state directory; the primary's sshd accepts only that key
        identity = ensure_identity(lab.host_dir(standby.hostname) / "var/lib/haoscar")
        with lab_sshd(lab, primary.hostname, [identity.public_key]) as address:
            options = {
                "host": address,
                "user": "root",
                "identity": "/var/lib/haoscar/ssh/id_ed25519",
                "known_hosts": "/var/lib/haoscar/ssh/known_hosts",
                "command": f"ip link set {primary.public_interface} down && touch /{MARKER}",
            }
            ha = start_ha(lab, spec, fencing="ssh", witness=False, fence_options=options)
            try:
                assert not (lab.host_dir(primary.hostname) / MARKER).exists()  # a cold start fences nobody
                with OwnerSampler(ha) as sampler:
                    time.sleep(0.2)
                    killed = time.monotonic()
                    ha.kill9(ha.primary)  # its kernel keeps the VIP; only the fence (or the lifetime) ends that
                    status = ha.wait_for(ha.standby, "active", 15)
                    assert pings(lab, "client", ha.vip)
            finally:
                ha.stop()
        assert (lab.host_dir(primary.hostname) / MARKER).exists()
        last = status["fencing"]["last"]
        assert last["ok"] and last["method"] == "ssh" and last["target"] == ha.primary, last
        assert sampler.max_owners(killed) == 1 and sampler.double_ownership_s(killed) == 0.0
    finally:
        down_lab(name, tmp_path)
