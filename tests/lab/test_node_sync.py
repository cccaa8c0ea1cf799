"""``haoscar node sync`` from a head against lab hosts running sshd: every lab host holds
``/etc/haoscar/no-image-sync`` (their root is this machine's), so each living one is refused with that file's
reason and nothing is transferred; the crashed one is reported unreachable; exit 1, no version recorded. (A real sync
runs only into a VM booted from the real image: ``scenarios/node_sync_check.py``.)

Safety: the real (not dry) run is only attempted after the dry run showed every living host refused."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from haoscar.lab.hostfs import NO_IMAGE_SYNC_TEXT
from haoscar.provision.images import ImageStore
from haoscar.scenarios.bench.exec_lab import exec_lab_spec, haoscar_in, lab_sshds, prepare_state
from haoscar.scenarios.lab_fixtures import MakeLab

pytestmark = pytest.mark.lab

NODES = ["node001", "node002", "node003"]
DOWN = "node003"


def test_lab_hosts_are_refused_by_their_marker_and_a_down_node_is_reported(make_lab: MakeLab, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    spec = exec_lab_spec(len(NODES))
    lab = make_lab(spec)
    state = tmp_path / "state"
    public_key = prepare_state(state, spec)
    canary = f"/opt/haoscar-sync-canary-{secrets.token_hex(4)}"
    tree = tmp_path / "tree"
    (tree / canary.lstrip("/")).parent.mkdir(parents=True)
    (tree / canary.lstrip("/")).write_text("from the image\n")
    ImageStore(state).import_tree("img", tree)
    with lab_sshds(lab, NODES, [public_key]):
        for node in NODES:
            assert (lab.host_dir(node) / "etc/haoscar/no-image-sync").read_text() == NO_IMAGE_SYNC_TEXT
        lab.crash(DOWN)

        dry = haoscar_in(lab, "head1", state, ["node", "sync", "--dry-run", "--json", "-t", "3", "@compute"])
        assert dry.returncode == 1, dry.stdout + dry.stderr
        results = json.loads(dry.stdout)["results"]
        living = [node for node in NODES if node != DOWN]
        assert {node: results[node]["status"] for node in NODES} == dict.fromkeys(living, "refused") | {
            DOWN: "unreachable"
        }
        reason = f"/etc/haoscar/no-image-sync: {NO_IMAGE_SYNC_TEXT.strip()}"
        assert all(results[node]["reason"] == reason for node in living), results

        done = haoscar_in(lab, "head1", state, ["node", "sync", "-t", "3", "@compute"])
        assert done.returncode == 1, done.stdout + done.stderr
        rows = [line.split(maxsplit=3) for line in done.stdout.splitlines()]
        assert ["node[001-002]", "img:1", "refused"] in [row[:3] for row in rows], done.stdout
        assert [DOWN, "img:1", "unreachable"] in [row[:3] for row in rows], done.stdout
        for node in living:
            assert lab.exec(node, ["test", "-e", canary], check=False).returncode == 1
        assert not Path(canary).exists()

        listed = haoscar_in(lab, "head1", state, ["node", "list", "--json"])
        assert {row["name"]: row["image_version"] for row in json.loads(listed.stdout) if row["name"] in NODES} == (
            dict.fromkeys(NODES)
        )
