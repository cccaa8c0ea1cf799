"""Each head's TLS directory (its own key; the CA key on the primary only) is never replicated: a pull during a
catch-up must not replace a head's certificate with its peer's, and the CA key must not reach the standby."""

from __future__ import annotations

from pathlib import Path

from haoscar.lab.defaults import default_spec
from haoscar.replication.config import trees_of
from haoscar.replication.rsync import _excludes


def test_the_tls_directory_is_excluded_from_the_tree_that_holds_it() -> None:
    trees = {str(t.path): t for t in trees_of(default_spec(), Path("/var/lib/haoscar"))}
    assert "--exclude=/tls/" in _excludes(trees["/etc/haoscar"])
    assert not any("tls" in e for e in _excludes(trees["/home"]))
