"""The cluster CA: one small certificate authority made at set-up, each head's certificate signed by it, and TLS
contexts that trust this CA and nothing else (pinned: a certificate from any public CA is refused).

Made with the ``openssl`` command line tool (OpenSSL 3, present wherever Python's ``ssl`` module is, since that
module is built on the same library), so haoscar needs no extra Python package for it. Keys are EC P-256, written
mode 0600 under a 0700 directory; certificates are public (0644).

Layout of a TLS directory (``/etc/haoscar/tls`` by default, beside the API token):
``ca.crt`` (the pinned CA), ``ca.key`` (only where certificates are issued), ``NODE.crt`` + ``NODE.key`` (a head).
The module uses only the kernel (``haoscar.errors``), so replication can build its TLS channel on it too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import UserError

CA_DAYS = 3650
CERT_DAYS = 825  # what browsers accept for a leaf; renewal is one `ensure_node_cert` with a fresh file set
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


@dataclass(frozen=True)
class NodeTls:
    """Where one node's TLS material lives."""

    ca: Path
    cert: Path
    key: Path


def node_files(tls_dir: Path, node: str) -> NodeTls:
    return NodeTls(tls_dir / "ca.crt", tls_dir / f"{node}.crt", tls_dir / f"{node}.key")


def _openssl(*args: str) -> str:
    if shutil.which("openssl") is None:
        raise UserError("the openssl command is missing; install the openssl package to make the cluster CA")
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise UserError(f"openssl {args[0]} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _prepare(tls_dir: Path) -> None:
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(tls_dir, 0o700)


def ensure_ca(tls_dir: Path, name: str = "haoscar cluster CA") -> Path:
    """The CA certificate in ``tls_dir``, created (with its 0600 key) when there is none yet."""
    _prepare(tls_dir)
    ca_crt, ca_key = tls_dir / "ca.crt", tls_dir / "ca.key"
    if ca_crt.exists():
        return ca_crt
    # Written in a private temporary directory, then renamed: a crash never leaves a certificate without its key.
    with tempfile.TemporaryDirectory(dir=tls_dir) as tmp:
        key, crt = Path(tmp) / "ca.key", Path(tmp) / "ca.crt"
        old = os.umask(0o077)
        try:
            _openssl(
                "req", "-x509", *_CURVE, "-nodes", "-keyout", str(key), "-out", str(crt), "-days", str(CA_DAYS),
                "-subj", f"/CN={name} {secrets.token_hex(4)}",
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            )  # fmt: skip
        finally:
            os.umask(old)
        os.chmod(key, 0o600)
        os.chmod(crt, 0o644)
        os.replace(key, ca_key)
        os.replace(crt, ca_crt)
    return ca_crt


def cert_addresses(cert: Path) -> set[str]:
    """The IP addresses a certificate names (its subjectAltName)."""
    text = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    return set(re.findall(r"IP Address:([0-9.]+)", text))


def _signed_by(cert: Path, ca: Path) -> bool:
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, check=False, timeout=30
    )
    return proc.returncode == 0


def issue_cert(tls_dir: Path, node: str, addresses: list[str], out_dir: Path | None = None) -> NodeTls:
    """Sign a new certificate for ``node`` (its name and ``addresses`` as subjectAltName) with the CA in
    ``tls_dir``; written to ``out_dir`` (default ``tls_dir``) as NODE.crt and NODE.key (0600)."""
    ca_key = tls_dir / "ca.key"
    if not ca_key.exists():
        raise UserError(
            f"{tls_dir} has no CA key to sign {node}'s certificate; make the cluster CA on the first head "
            "(haoscar.tlsca.init_cluster_tls) and copy ca.crt and the head's NODE.crt/NODE.key here"
        )
    for address in addresses:
        ipaddress.ip_address(address)  # a malformed address must not reach the extension text
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", node):
        raise UserError(f"{node!r} is not a host name; the certificate is issued to the head's host name")
    out = out_dir or tls_dir
    _prepare(out)
    alt = ",".join([f"DNS:{node}", *(f"IP:{a}" for a in addresses)])
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        key, csr, crt, ext = (Path(tmp) / n for n in ("node.key", "node.csr", "node.crt", "ext.cnf"))
        ext.write_text(
            f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        old = os.umask(0o077)
        try:
            _openssl("req", "-new", *_CURVE, "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={node}")
            _openssl(
                "x509", "-req", "-in", str(csr), "-CA", str(tls_dir / "ca.crt"), "-CAkey", str(ca_key),
                "-set_serial", str(secrets.randbits(63)), "-days", str(CERT_DAYS), "-extfile", str(ext),
                "-out", str(crt),
            )  # fmt: skip
        finally:
            os.umask(old)
        os.chmod(key, 0o600)
        os.chmod(crt, 0o644)
        files = NodeTls(out / "ca.crt", out / f"{node}.crt", out / f"{node}.key")
        os.replace(key, files.key)
        os.replace(crt, files.cert)
    if out != tls_dir:
        shutil.copyfile(tls_dir / "ca.crt", out / "ca.crt")
        os.chmod(out / "ca.crt", 0o644)
    return files


def ensure_node_cert(tls_dir: Path, node: str, addresses: list[str]) -> NodeTls:
    """This node's certificate, (re)issued when missing, not covering ``addresses`` or not signed by the CA here.
    A first head without any CA makes one (as the API token is made on first start); a head that was given only
    ``ca.crt`` and its own certificate (no ``ca.key``) uses them as they are."""
    ensure_ca(tls_dir)
    files = node_files(tls_dir, node)
    if files.cert.exists() and files.key.exists():
        if not (tls_dir / "ca.key").exists():
            return files
        if set(addresses) <= cert_addresses(files.cert) and _signed_by(files.cert, files.ca):
            return files
    return issue_cert(tls_dir, node, addresses)


def init_cluster_tls(tls_dir: Path, nodes: dict[str, list[str]]) -> dict[str, NodeTls]:
    """The set-up step: the cluster CA plus one certificate per node (``{host name: [its addresses]}``). Copy
    ``ca.crt`` and a node's NODE.crt / NODE.key (0600) to that node's TLS directory."""
    ensure_ca(tls_dir)
    return {node: issue_cert(tls_dir, node, addresses) for node, addresses in nodes.items()}


def server_context(files: NodeTls, require_client_cert: bool = False) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the node's certificate; with ``require_client_cert`` (mutual TLS, e.g. a
    replication channel) the peer must show a certificate signed by the cluster CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert, files.key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(files.ca))
    return ctx


def client_context(ca: Path, client: NodeTls | None = None) -> ssl.SSLContext:
    """A client context that trusts the cluster CA only (never the system's CAs) and checks the server's name or
    IP address; ``client`` adds a certificate for mutual TLS."""
    if not ca.exists():
        raise UserError(f"the cluster CA certificate {ca} does not exist; copy it from a head's TLS directory")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED and check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    return ctx


@dataclass(frozen=True)
class TlsBundle:
    """What set-up writes: the CA (certificate + key, kept on the primary) and each head's TLS directory."""

    ca_crt: bytes
    ca_key: bytes
    files: dict[str, dict[str, tuple[bytes, int]]]  # head -> {file name in its TLS dir: (data, mode)}


def tls_bundle(
    heads: dict[str, list[str]],
    ca: tuple[bytes, bytes] | None = None,
    existing: dict[str, tuple[bytes, bytes]] | None = None,
) -> TlsBundle:
    """For ``haoscar install complete`` (through any transport): the cluster CA (``ca`` = the primary's existing
    ``(ca.crt, ca.key)``, or a new one) and, for each head in ``heads`` (host name -> addresses), ``ca.crt``,
    ``HEAD.crt`` and ``HEAD.key`` (0600). A head's ``existing`` (cert, key) is kept when the CA signed it for all
    its addresses, so running set-up again changes nothing. The CA key goes to the primary's TLS dir only."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "tls"
        _prepare(work)
        if ca is not None:
            (work / "ca.crt").write_bytes(ca[0])
            (work / "ca.key").write_bytes(ca[1])
            os.chmod(work / "ca.key", 0o600)
        ensure_ca(work)
        out: dict[str, dict[str, tuple[bytes, int]]] = {}
        for head, addresses in heads.items():
            files = node_files(work, head)
            if existing and head in existing:
                files.cert.write_bytes(existing[head][0])
                files.key.write_bytes(existing[head][1])
                os.chmod(files.key, 0o600)
            ensure_node_cert(work, head, addresses)
            out[head] = {
                "ca.crt": (files.ca.read_bytes(), 0o644),
                f"{head}.crt": (files.cert.read_bytes(), 0o644),
                f"{head}.key": (files.key.read_bytes(), 0o600),
            }
        return TlsBundle((work / "ca.crt").read_bytes(), (work / "ca.key").read_bytes(), out)


async def accepted_streams(
    sock: socket.socket, tls: ssl.SSLContext | None, limit: int = 64 * 1024, handshake_timeout: float = 5.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a socket this process accepted itself (so it could refuse it before any byte was read), with
    the TLS handshake done first when ``tls`` is given. Unlike ``StreamWriter.start_tls`` after the fact, no
    early byte of the client's handshake can land in a plain buffer and be lost."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol, sock, ssl=tls, ssl_handshake_timeout=handshake_timeout if tls is not None else None
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def listening_socket(address: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking TCP listener on exactly ``address``:``port``."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
