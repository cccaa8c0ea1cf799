"""Cluster accounts in a lab: two heads and four compute hosts running sshd with the cluster key. ``user add`` from
head1 gives every host the same uid and gid (a crashed node is reported, exit 1, and gets the user at the next
``cluster sync``); the user logs in from node to node with its own key and no password; a node added to the
database resolves both ways on every node after the sync; ``user delete`` removes the user everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import update

from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.exec_lab import exec_lab_spec, haoscar_in, prepare_state
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.users_lab import copy_home, restart_sshd, user_sshds

pytestmark = pytest.mark.lab

HEADS = ["head1", "head2"]
NODES = ["node001", "node002", "node003"]
DOWN = "node003"
ALICE = "uid=2000(alice) gid=2000(alice) groups=2000(alice)"
ADDED = "node004"  # a lab host that is not in the database until the test adds it


def _id(lab: Lab, host: str, name: str = "alice") -> str:
    done = lab.exec(host, ["id", name], check=False)
    return done.stdout.strip() if done.returncode == 0 else f"no such user: {done.stderr.strip()}"


def _mark_installed(state: Path, nodes: list[str]) -> None:
    """As the installer's report would (these namespace hosts were never network-installed)."""
    database = open_database(state)
    try:
        with database.session() as session:
            session.execute(update(Node).where(Node.name.in_(nodes)).values(install_state="installed"))
    finally:
        database.close()


def _rows(stderr: str) -> dict[str, str]:
    """The sync table's rows: host -> status."""
    return {
        f[0]: f[1] for f in (line.split() for line in stderr.splitlines()) if len(f) >= 2 and f[1] in ("ok", "FAILED")
    }


def test_user_add_sync_login_and_delete_across_the_cluster(make_lab: MakeLab, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = exec_lab_spec(4)
    lab = make_lab(spec)
    state = tmp_path / "state"
    public_key = prepare_state(state, spec)
    assert haoscar_in(lab, "head1", state, ["node", "delete", "-y", ADDED]).returncode == 0
    every = [*HEADS, *NODES]
    with user_sshds(lab, [*every, ADDED], [public_key]) as sshds:
        lab.crash(DOWN)
        done = haoscar_in(lab, "head1", state, ["user", "add", "alice", "--comment", "Alice Liddell"])
        assert done.returncode == 1, done.stdout + done.stderr
        assert "added user alice: uid 2000, group alice (2000), home /home/alice" in done.stdout
        rows = _rows(done.stderr)
        assert rows == {"head1": "ok", "head2": "ok", "node001": "ok", "node002": "ok", DOWN: "FAILED"}, done.stderr
        living = [h for h in every if h != DOWN]
        assert {h: _id(lab, h) for h in living} == dict.fromkeys(living, ALICE)

        home = lab.host_dir("head1") / "home/alice"
        key = home / ".ssh/id_ed25519"
        assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (2000, 0o700)
        assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (2000, 0o600)
        assert (home / ".bashrc").is_file()
        assert Path(f"{key}.pub").read_text().strip() in (home / ".ssh/authorized_keys").read_text()

        # The node comes back: the next sync gives it the user, with the same ids.
        lab.restore(DOWN)
        restart_sshd(lab, sshds, DOWN, [public_key])
        assert _id(lab, DOWN).startswith("no such user")  # it was down: nothing reached it
        done = haoscar_in(lab, "head1", state, ["cluster", "sync"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert _id(lab, DOWN) == ALICE

        # alice logs in from node001 to node002 by name with her own key: no password, no host key prompt.
        copy_home(lab, "head1", ["node001", "node002"], "alice")
        login = ["setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "ssh", "-o", "BatchMode=yes"]
        done = lab.exec("node001", [*login, "node002", "hostname"], check=False, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "node002"), done.stderr
        done = lab.exec("node001", [*login, "head1", "hostname"], check=False, timeout=60)  # the head's key too
        assert (done.returncode, done.stdout.strip()) == (0, "head1"), done.stderr

        # A node added to the database: `node add` itself syncs the heads and the installed nodes (it says so), so
        # they resolve it both ways; the new node gets everything at the next `cluster sync` (it is not installed).
        _mark_installed(state, NODES)
        address = str(lab.host(ADDED).address_on("private"))
        added = ["node", "add", "--image", "img", "--nodeset", ADDED, "--start-ip", address]
        done = haoscar_in(lab, "head1", state, added)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "cluster sync: 5 hosts have the new /etc/hosts and keys" in done.stderr
        assert lab.exec(ADDED, ["getent", "hosts", "node001"], check=False).returncode == 2
        done = haoscar_in(lab, "head1", state, ["cluster", "sync", ADDED])
        assert done.returncode == 0, done.stdout + done.stderr
        node2 = str(lab.host("node002").address_on("private"))
        for host in ["head2", "node001", ADDED]:
            forward = lab.exec(host, ["getent", "hosts", ADDED]).stdout.split()
            assert forward[:1] == [address] and ADDED in forward, (host, forward)
            reverse = lab.exec(host, ["getent", "hosts", address]).stdout.split()
            assert reverse[:1] == [address] and ADDED in reverse, (host, reverse)
            assert lab.exec(host, ["getent", "hosts", "node002"]).stdout.split()[0] == node2
            assert lab.exec(host, ["getent", "hosts", node2]).stdout.split()[1:] == ["node002.cluster.local", "node002"]
        assert _id(lab, ADDED) == ALICE

        done = haoscar_in(lab, "head1", state, ["user", "delete", "alice"])
        assert done.returncode == 0, done.stdout + done.stderr
        for host in [*every, ADDED]:
            assert _id(lab, host).startswith("no such user"), host
        assert not home.exists()
        assert haoscar_in(lab, "head1", state, ["user", "list", "--json"]).stdout.strip() == "[]"
