"""Fixtures shared by the HA unit tests of this directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from haoscar.tlsca import ensure_node_cert


@pytest.fixture(scope="module")
def cluster_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TLS directory as a head has it (the cluster CA, head1's certificate for 127.0.0.1): what the API server
    tests start their HTTPS listeners with (test_api_auth, test_api_limits). Once per module: openssl is slow."""
    path = tmp_path_factory.mktemp("tls")
    ensure_node_cert(path, "head1", ["127.0.0.1"])
    return path
