"""E-mail alerts are never sent in clear by default (issue 10, finding 6: e-mail alerts with no STARTTLS).

The attacker sits on the path to the mail relay and strips STARTTLS from its EHLO answer (or simply runs a relay
without it): the hook must fail loudly and send nothing, neither the alert nor the SMTP password. The legitimate
paths still work: STARTTLS with a certificate signed by a configured CA, and plain SMTP to a relay the spec names
as trusted (``smtp_security: none``).
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from haoscar.ha.alerts import daemon_bus
from haoscar.spec.models import HA, Alert
from haoscar.tlsca import NodeTls, ensure_ca, issue_cert


class SmtpServer:
    """A tiny threaded SMTP server on 127.0.0.1; offers STARTTLS (and AUTH after it) only when given a cert."""

    def __init__(self, tls: NodeTls | None) -> None:
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.commands: list[tuple[bool, str]] = []  # (over TLS, command line) of every command received
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        stream: Any = conn
        secure = False
        reader = stream.makefile("rb")
        stream.sendall(b"220 relay ESMTP\r\n")
        while line := reader.readline():
            text = line.decode(errors="replace").strip()
            self.commands.append((secure, text))
            verb = text[:8].upper()
            if verb.startswith(("EHLO", "HELO")):
                extensions = [b"250-relay"]
                if self.tls is not None and not secure:
                    extensions.append(b"250-STARTTLS")
                if secure:
                    extensions.append(b"250-AUTH PLAIN")
                stream.sendall(b"\r\n".join([*extensions, b"250 8BITMIME"]) + b"\r\n")
            elif verb == "STARTTLS" and self.tls is not None:
                stream.sendall(b"220 go ahead\r\n")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.tls.cert, self.tls.key)
                try:
                    stream = ctx.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                reader, secure = stream.makefile("rb"), True
            elif verb.startswith("DATA"):
                stream.sendall(b"354 go on\r\n")
                data = b""
                while (chunk := reader.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.messages.append(data)
                stream.sendall(b"250 queued\r\n")
            elif verb.startswith("QUIT"):
                stream.sendall(b"221 bye\r\n")
                return
            elif verb.startswith("AUTH"):
                stream.sendall(b"235 ok\r\n")
            else:
                stream.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> NodeTls:
    tls_dir = tmp_path_factory.mktemp("tls")
    ensure_ca(tls_dir)
    return issue_cert(tls_dir, "relay", ["127.0.0.1"])


def deliver(tmp_path: Path, port: int, **options: Any) -> str:
    """Send one critical event through an e-mail alert; the log of the bus (errors included)."""
    log = io.StringIO()
    alert = Alert.model_validate(
        {"email": "ops@lab.haoscar", "smtp_server": "127.0.0.1", "smtp_port": port, "timeout": 5, **options}
    )
    bus = daemon_bus(HA(alerts=[alert]), "head1", tmp_path, log_stream=log)
    bus.event("role", "standby -> active", "critical")
    assert bus.flush(30)
    bus.close()
    return log.getvalue()


def test_a_relay_without_starttls_gets_nothing_in_clear(tmp_path: Path) -> None:
    server = SmtpServer(tls=None)
    password = tmp_path / "smtp.password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    log = deliver(tmp_path, server.port, smtp_user="haoscar", smtp_password_file=str(password))
    server.close()
    assert f"127.0.0.1:{server.port} does not offer STARTTLS; the alert was not sent in clear" in log
    verbs = [text.split()[0].upper() for _, text in server.commands]
    assert "MAIL" not in verbs and "AUTH" not in verbs and "DATA" not in verbs
    assert server.messages == []
    assert not any("s3cret" in text for _, text in server.commands)


def test_starttls_with_the_configured_ca_delivers_and_authenticates_only_over_tls(tmp_path: Path, tls: NodeTls) -> None:
    server = SmtpServer(tls=tls)
    password = tmp_path / "smtp.password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    log = deliver(
        tmp_path, server.port, smtp_ca_file=str(tls.ca), smtp_user="haoscar", smtp_password_file=str(password)
    )
    server.close()
    assert "events.error" not in log
    assert len(server.messages) == 1 and b"standby -> active" in server.messages[0]
    after_tls = [text.split()[0].upper() for secure, text in server.commands if secure]
    before_tls = [text.split()[0].upper() for secure, text in server.commands if not secure]
    assert before_tls == ["EHLO", "STARTTLS"]
    assert {"AUTH", "MAIL", "RCPT", "DATA"} <= set(after_tls)


def test_a_certificate_the_system_cas_do_not_sign_is_refused(tmp_path: Path, tls: NodeTls) -> None:
    server = SmtpServer(tls=tls)  # signed by the test CA, which is not in the system store
    log = deliver(tmp_path, server.port)
    server.close()
    assert "alert e-mail to ops@lab.haoscar" in log and "CERTIFICATE_VERIFY_FAILED" in log
    assert server.messages == []


def test_plain_smtp_only_when_the_spec_names_a_trusted_relay(tmp_path: Path) -> None:
    server = SmtpServer(tls=None)
    log = deliver(tmp_path, server.port, smtp_security="none")
    server.close()
    assert "events.error" not in log
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"smtp_security": "none", "smtp_user": "u", "smtp_password_file": "/etc/haoscar/smtp.password"}, "in clear"),
        ({"smtp_user": "u"}, "smtp_user and smtp_password_file go together"),
        ({"smtp_security": "ssl"}, "smtp_security"),
    ],
)
def test_unsafe_smtp_specs_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Alert.model_validate({"email": "ops@lab.haoscar", "smtp_server": "127.0.0.1", **options})
