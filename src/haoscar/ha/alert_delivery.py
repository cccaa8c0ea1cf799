"""What keeps alert delivery safe (issue 10, finding 6): e-mail only over TLS unless a trusted local relay is
named as such, credentials never in clear, and a bounded number of alerts per kind and window.

The hooks themselves live in ``haoscar.ha.alerts``; this module holds the SMTP session and the rate limit so that
both can be tested on their own. ``smtplib`` and ``email`` (with ``urllib.request`` for webhooks, in ``alerts``)
are imported when a message is sent, not by the daemon at start: ~3 MB of an idle head's memory for a path most
heads never take (docs/benchmarks.md, idle cost).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from haoscar.spec.models import Alert

if TYPE_CHECKING:
    import ssl
    from email.message import EmailMessage

ALERTS_PER_KIND = 5  # at most this many alerts of one event kind ...
ALERT_WINDOW_S = 300.0  # ... in this many seconds; the rest are counted (``suppressed``) and logged once


@dataclass(frozen=True)
class SmtpSecurity:
    """``starttls`` (the default): upgrade with STARTTLS and verify the server's certificate against the system
    CA store or ``ca_file``; ``tls``: TLS from the first byte (port 465); ``none``: plain SMTP, only for a
    trusted relay on the head itself, and never with credentials."""

    mode: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: str | None = None
    user: str | None = None
    password_file: str | None = None

    @classmethod
    def from_alert(cls, alert: Alert) -> SmtpSecurity:
        return cls(alert.smtp_security, alert.smtp_ca_file, alert.smtp_user, alert.smtp_password_file)

    def context(self) -> ssl.SSLContext:
        import ssl

        return ssl.create_default_context(cafile=self.ca_file)


def mail_refused(message: str) -> Exception:
    """The server cannot be talked to safely (no STARTTLS offered): nothing was sent. An ``SMTPException``."""
    import smtplib

    return smtplib.SMTPException(message)


def send_mail(server: str, port: int, timeout: float, security: SmtpSecurity, msg: EmailMessage) -> None:
    """One message through ``server``; raises ``smtplib.SMTPException`` (a refusal to talk in clear among them) or
    ``OSError`` (``ssl.SSLError`` for a certificate that does not verify) and then sent nothing."""
    import smtplib

    smtp: smtplib.SMTP
    if security.mode == "tls":
        smtp = smtplib.SMTP_SSL(server, port, timeout=timeout, context=security.context())
    else:
        smtp = smtplib.SMTP(server, port, timeout=timeout)
    with smtp:
        if security.mode == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise mail_refused(
                    f"{server}:{port} does not offer STARTTLS; the alert was not sent in clear "
                    "(smtp_security: none is for a trusted relay on the head itself)"
                )
            smtp.starttls(context=security.context())
            smtp.ehlo()
        if security.user is not None:
            if security.mode == "none":  # the spec refuses this too; a second guard costs nothing
                raise mail_refused("refusing to send SMTP credentials over a plain connection")
            password = Path(security.password_file or "").read_text().strip()
            smtp.login(security.user, password)
        smtp.send_message(msg)


class KindLimit:
    """At most ``per_window`` alerts of one event kind per ``window`` seconds: a flood of forged packets or
    rejected connections costs a handful of mails, not one per packet. Thread-safe."""

    def __init__(
        self,
        per_window: int = ALERTS_PER_KIND,
        window: float = ALERT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_window = per_window
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self.suppressed = 0

    def allow(self, kind: str) -> tuple[bool, bool]:
        """(send it, first one held back in this window: say so once)."""
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(kind, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            count += 1
            self._windows[kind] = (start, count)
            if count <= self.per_window:
                return True, False
            self.suppressed += 1
            return False, count == self.per_window + 1
