"""The commands behind `haoscar spec|db|node|standby|image|lab`: ``op(env, request) -> report``, no CLI involved."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from haoscar.commands.apply import ApplySpec, spec_apply
from haoscar.commands.database import ShowDatabase, UpgradeDatabase, db_status, db_upgrade
from haoscar.commands.env import Env
from haoscar.commands.images import ListImages, ShowSshKey, image_list, image_ssh_key
from haoscar.commands.lab import SetLink, lab_link
from haoscar.commands.nodes import DeleteNodes, ListNodes, node_delete, node_list
from haoscar.commands.specs import ValidateSpec, spec_validate
from haoscar.commands.standby import StandbyServer, standby_add
from haoscar.errors import UserError

LAB = Path(str(resources.files("haoscar") / "data" / "lab.yaml"))


def test_db_status_creates_nothing_and_upgrade_reports_the_revisions(tmp_path: Path) -> None:
    env = Env(state_dir=tmp_path)
    before = db_status(env, ShowDatabase())
    assert (before.exists, before.current, before.up_to_date) == (False, None, False)
    assert list(tmp_path.iterdir()) == []
    done = db_upgrade(env, UpgradeDatabase())
    assert (done.before, done.now, done.changed) == (None, before.head, True)
    assert db_upgrade(env, UpgradeDatabase()).changed is False
    after = db_status(env, ShowDatabase())
    assert after.as_dict() | {"database": ""} == {
        "database": "", "exists": True, "current": before.head, "head": before.head, "up_to_date": True,
    }  # fmt: skip


def test_spec_validate_writes_nothing(tmp_path: Path) -> None:
    checked = spec_validate(Env(state_dir=tmp_path), ValidateSpec(LAB))
    assert checked.spec.cluster.name == "labcluster"
    assert checked.as_dict()["valid"] is True
    assert list(tmp_path.iterdir()) == []


def test_one_env_one_database_for_a_sequence_of_commands(tmp_path: Path) -> None:
    with Env(state_dir=tmp_path) as env:
        report = spec_apply(env, ApplySpec(LAB))
        assert report.folded()["added"] == "head[1-2],node[01-02]"
        database = env.database
        assert node_list(env, ListNodes("node[01-02]")).nodeset == "node[01-02]"
        assert node_delete(env, DeleteNodes("head2")).as_dict() == {"deleted": "head2", "count": 1}
        added = standby_add(env, StandbyServer(alias_ip="198.19.0.10", local_ip="198.18.0.2", hostname="head2"))
        assert added.as_dict()["alias_ip"] == "198.19.0.10" and added.node.role == "standby"
        assert env.database is database
    assert not env.database_opened


def test_node_list_reports_unknown_nodes(tmp_path: Path) -> None:
    with Env(state_dir=tmp_path) as env:
        spec_apply(env, ApplySpec(LAB))
        with pytest.raises(UserError, match="unknown node node03"):
            node_list(env, ListNodes("node[01-03]"))


def test_lab_link_names_the_field_to_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^state 'sideways': say up or down$"):
        lab_link(Env(state_dir=tmp_path), SetLink("head1", "eth0", "sideways"))


def test_image_commands_on_an_empty_store(tmp_path: Path) -> None:
    env = Env(state_dir=tmp_path)
    assert image_list(env, ListImages()).images == []
    key = image_ssh_key(env, ShowSshKey()).public_key
    assert key.startswith("ssh-ed25519 ")
    assert image_ssh_key(env, ShowSshKey()).public_key == key  # made once, then reused
