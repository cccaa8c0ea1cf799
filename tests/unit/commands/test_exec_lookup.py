"""``db.peek`` (the ``sqlite3`` look-ups of ``haoscar exec``, ``commands.exec.lookup``) reads what the ORM reads,
and steps aside for a database that is missing or not at the current schema."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.commands import exec as exec_module
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.exec import lookup
from haoscar.db.peek import open_peek
from haoscar.provision.group_source import groups_from_rows
from haoscar.provision.node_groups import node_groups, node_names, private_addresses
from haoscar.spec import check_text

LAB = (Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml").read_text()


def _env(tmp_path: Path) -> Env:
    spec, problems = check_text(LAB.replace("count: 2", "count: 12"), "lab.yaml")
    assert spec is not None, problems
    env = Env(state_dir=tmp_path / "state")
    apply_spec(env.database, spec)
    return env


def test_peek_reads_what_the_orm_reads(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with env.database.session(readonly=True) as session:
        orm = (sorted(node_names(session)), node_groups(session), private_addresses(session))
    with open_peek(env.state_dir) as peek:
        assert peek is not None
        groups = groups_from_rows(peek.group_names(), peek.node_rows())
        assert (sorted(peek.node_names()), groups, peek.private_addresses()) == orm
    assert orm[1]["compute"][:3] == ["node01", "node02", "node03"] and len(orm[2]) == 14
    env.close()


def test_no_database_or_an_older_schema_takes_the_normal_door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_peek(tmp_path) as peek:
        assert peek is None
    assert not (tmp_path / "haoscar.db").exists()  # looking created nothing
    env = _env(tmp_path)
    fast = lookup(env)
    env.close()

    @contextlib.contextmanager
    def no_peek(_state_dir: Path) -> Iterator[None]:
        yield None

    monkeypatch.setattr(exec_module, "open_peek", no_peek)
    with Env(state_dir=env.state_dir) as other:
        assert lookup(other) == fast  # the ORM's door gives the same answer
    assert len(fast.names) == 14 and fast.addresses["node12"] == "198.18.0.112"
    with sqlite3.connect(env.state_dir / "haoscar.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0004'")
    with open_peek(env.state_dir) as peek:
        assert peek is None  # not the current schema: the normal door migrates it first
