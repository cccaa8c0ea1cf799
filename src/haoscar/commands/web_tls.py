"""The web console's certificate: signed by the cluster CA, naming the addresses the console answers on.

It lives in ``/etc/haoscar/web/`` (``console.crt`` 0644, ``console.key`` 0600, directory 0700): that tree is
replicated with ``/etc/haoscar``, so the standby holds the same certificate and key and serves the same name when
the console follows the public alias to it (docs/security.md, "web console key"). It is issued on a head that has
the CA key (the primary, ``/etc/haoscar/tls/ca.key``) when missing, not covering the addresses, or not signed by
this cluster's CA; a head without the CA key uses the one it was given, or says what to do.
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from haoscar import tlsca
from haoscar.commands.env import Env
from haoscar.errors import FieldError, UserError
from haoscar.fsutil import atomic_write
from haoscar.keys import write_secret

CERT_NAME = "haoscar-console"


@dataclass(frozen=True)
class ConsoleCert:
    tls_dir: Path  # the cluster CA: ca.crt (and ca.key on the primary)
    console_dir: Path  # console.crt + console.key
    bind: str  # the address the console listens on (named by the certificate)
    addresses: tuple[str, ...] = ()  # further addresses it must name (the public alias when bound elsewhere)


@dataclass(frozen=True)
class ConsoleTls:
    ca: Path
    cert: Path
    key: Path
    addresses: tuple[str, ...]
    issued: bool  # made now (else the existing one was good)

    def files(self) -> tlsca.NodeTls:
        return tlsca.NodeTls(self.ca, self.cert, self.key)


def _checked_addresses(request: ConsoleCert) -> tuple[str, ...]:
    out: list[str] = []
    for field, values in (("bind", (request.bind,)), ("addresses", request.addresses)):
        for value in values:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise FieldError(field, f"{value!r} is not an IP address") from None
            if address.is_unspecified:
                raise FieldError(
                    field,
                    f"{value} is every address; bind the console to one (the public alias): its certificate names it",
                )
            if str(address) not in out:
                out.append(str(address))
    return tuple(out)


def _signed_by(cert: Path, ca: Path) -> bool:
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, check=False, timeout=30
    )
    return proc.returncode == 0


def _pair(cert: Path, key: Path) -> bool:
    """The key is the certificate's (a crash between writing the two must not leave a console that cannot start)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        return False
    return True


def ensure_console_cert(env: Env, request: ConsoleCert) -> ConsoleTls:
    """The console's certificate and key for ``request``'s addresses, issued now if needed (see the module doc)."""
    del env  # files only; the Env is the door all commands take
    addresses = _checked_addresses(request)
    ca, ca_key = request.tls_dir / "ca.crt", request.tls_dir / "ca.key"
    cert, key = request.console_dir / "console.crt", request.console_dir / "console.key"
    if not ca.exists():
        raise UserError(
            f"the cluster CA {ca} does not exist: set up the cluster first (`haoscar install complete`), "
            "or give the TLS directory that holds ca.crt"
        )
    if cert.exists() and key.exists():
        good = set(addresses) <= tlsca.cert_addresses(cert) and _signed_by(cert, ca) and _pair(cert, key)
        if good:
            return ConsoleTls(ca, cert, key, addresses, issued=False)
    if not ca_key.exists():
        raise UserError(
            f"{cert} is missing or does not name {', '.join(addresses)}, and this head has no CA key ({ca_key}) to "
            "sign a new one: run `haoscar web serve` with these addresses once on the primary head (its "
            f"{request.console_dir} is replicated to the standby)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        made = tlsca.issue_cert(request.tls_dir, CERT_NAME, list(addresses), out_dir=Path(tmp))
        request.console_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        request.console_dir.chmod(0o700)
        write_secret(key, made.key.read_bytes(), mode=0o600, what="web console TLS key")
        atomic_write(cert, made.cert.read_bytes(), mode=0o644)
    return ConsoleTls(ca, cert, key, addresses, issued=True)
