"""``haoscar keys rotate --purpose ssh`` against real sshd in the lab hosts: the new key is authorized on both
heads and the witness before haoscar switches to it, and the old key no longer logs in anywhere afterwards."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab
from haoscar.provision.sshkeys import SshIdentity, ensure_identity
from haoscar.scenarios.ha_lab import dump_spec
from haoscar.scenarios.lab_fixtures import MakeLab

sys.path.insert(0, str(Path(__file__).parents[1]))
from sshd_helper import lab_sshd

pytestmark = pytest.mark.lab

PRIMARY, STANDBY, WITNESS = "head1", "head2", "witness"
STATE = "/var/lib/haoscar"
# Inside /etc/haoscar, each lab host's private directory (lab hosts share the machine's /root).
AUTHORIZED = "/etc/haoscar/sshd/authorized_keys"


def _login(lab: Lab, key: str, address: str) -> int:
    argv = [*SshIdentity(Path(key), Path(f"{STATE}/ssh/known_hosts")).ssh_argv(), f"root@{address}", "true"]
    return lab.exec(PRIMARY, argv, check=False, timeout=30).returncode


def test_the_ssh_key_is_rotated_on_both_heads_and_the_witness(make_lab: MakeLab) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = default_spec()
    lab = make_lab(spec)
    (lab.host_dir(PRIMARY) / "etc/haoscar").mkdir(parents=True, exist_ok=True)
    (lab.host_dir(PRIMARY) / "etc/haoscar/cluster.yaml").write_text(dump_spec(spec))
    identity = ensure_identity(lab.host_dir(PRIMARY) / STATE.lstrip("/"))
    old_pub = identity.public_key
    kept = lab.host_dir(PRIMARY) / "etc/haoscar/old_id"  # the old private key, as a thief would have kept it
    shutil.copy(identity.key, kept)
    os.chmod(kept, 0o600)
    with (
        lab_sshd(lab, PRIMARY, [old_pub]),
        lab_sshd(lab, STANDBY, [old_pub]) as standby,
        lab_sshd(lab, WITNESS, [old_pub]) as witness,
    ):
        assert _login(lab, "/etc/haoscar/old_id", witness) == 0
        argv = [sys.executable, "-m", "haoscar", "--state-dir", STATE, "keys", "rotate", "--purpose", "ssh",
                "--spec", "/etc/haoscar/cluster.yaml", "--authorized-keys", AUTHORIZED, "--json"]  # fmt: skip
        done = lab.exec(PRIMARY, argv, check=False, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert [(r["purpose"], sorted(r["hosts"])) for r in report["rotated"]] == [
            ("ssh", sorted([PRIMARY, STANDBY, WITNESS]))
        ]
        new_pub = identity.public_key
        assert new_pub != old_pub
        for host in (PRIMARY, STANDBY, WITNESS):
            lines = (lab.host_dir(host) / AUTHORIZED.lstrip("/")).read_text().splitlines()
            assert lines == [new_pub], host
        for address in (standby, witness):
            assert _login(lab, f"{STATE}/ssh/id_ed25519", address) == 0  # haoscar's key: the new one
            assert _login(lab, "/etc/haoscar/old_id", address) == 255  # the old one: refused
