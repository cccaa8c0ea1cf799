"""Per-node install tokens: only the hash is stored, a token opens only its own node, expires, is replaced by a
newer one and revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from haoscar.db.models import InstallToken, Node
from haoscar.db.session import open_database
from haoscar.errors import UserError
from haoscar.provision import install_tokens
from haoscar.provision.install_tokens import Forbidden, check, mint, revoke, set_token_ttl, token_ttl


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = open_database(tmp_path)
    with database.session() as session:
        session.add_all([Node(name="node01", domain="lab"), Node(name="node02", domain="lab")])
    yield database
    database.close()


def test_a_token_opens_its_own_node_only_and_only_its_hash_is_stored(db) -> None:  # type: ignore[no-untyped-def]
    token = mint(db, "node01")
    check(db, "node01", token)
    with pytest.raises(Forbidden, match="not node02's"):
        check(db, "node02", token)
    for wrong in (None, "", token[:-1] + ("A" if token[-1] != "A" else "B")):
        with pytest.raises(Forbidden):
            check(db, "node01", wrong)
    with db.session() as session:
        stored = session.scalars(select(InstallToken.token_hash)).all()
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64


def test_a_token_expires_is_replaced_by_a_newer_one_and_is_revoked(db) -> None:  # type: ignore[no-untyped-def]
    assert token_ttl(db) == install_tokens.DEFAULT_TTL
    now = datetime.now(UTC)
    old = mint(db, "node01", ttl=60, now=now - timedelta(seconds=61))
    with pytest.raises(Forbidden, match="expired"):
        check(db, "node01", old)
    first = mint(db, "node01")
    second = mint(db, "node01")
    with pytest.raises(Forbidden):
        check(db, "node01", first)
    check(db, "node01", second)
    revoke(db, "node01")
    with pytest.raises(Forbidden):
        check(db, "node01", second)
    assert set_token_ttl(db, 600) == 600 and token_ttl(db) == 600
    with pytest.raises(UserError, match="out of range"):
        set_token_ttl(db, 5)
