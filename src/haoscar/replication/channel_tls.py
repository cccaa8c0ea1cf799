"""The TLS side of both replication channels: this head's certificate and the cluster CA (``haoscar.tlsca``), checked
to be there with a message that says what to do, and the contexts the database channel uses (the file channel's
``haoscar.tlspipe`` builds the same ones in its own process).

Mutual TLS: each side shows a certificate signed by the cluster CA and trusts that CA only; the client also checks
that the standby's certificate names the address it dialled. Inside, the channels keep their own authentication
(HMAC sessions, rsync's ``auth users``), so a stolen certificate alone opens neither.
"""

from __future__ import annotations

import ssl

from haoscar.errors import UserError
from haoscar.replication.config import ReplConfig
from haoscar.tlsca import NodeTls, client_context, node_files, server_context


def tls_files(cfg: ReplConfig) -> NodeTls:
    """This head's TLS files, or a clear error naming the missing ones."""
    files = node_files(cfg.tls, cfg.node)
    missing = [str(path) for path in (files.ca, files.cert, files.key) if not path.is_file()]
    if missing:
        raise UserError(
            f"replication is encrypted with the cluster CA, but {', '.join(missing)} is missing on {cfg.node}: "
            "run `haoscar install complete` on the primary head (it writes ca.crt and each head's certificate and "
            f"key to {cfg.tls})"
        )
    return files


def server_tls(cfg: ReplConfig) -> ssl.SSLContext:
    """The standby's side: its certificate, and the peer's required (signed by the cluster CA)."""
    return server_context(tls_files(cfg), require_client_cert=True)


def client_tls(cfg: ReplConfig) -> ssl.SSLContext:
    """The active head's side: its certificate shown, the standby's checked against the CA and its address."""
    files = tls_files(cfg)
    return client_context(files.ca, files)
