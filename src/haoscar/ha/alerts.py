"""Alert hooks: HA events at or above a severity go to a command, a webhook URL, or e-mail through SMTP.

Every hook runs on the alert thread of the ``EventBus`` (never on the event loop) with its own timeout, and a hook
that fails is logged and counted: an unreachable mail server must never stop a failover.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from haoscar.events import Event, EventBus, at_least
from haoscar.ha.alert_delivery import KindLimit, SmtpSecurity, send_mail
from haoscar.spec.models import HA, Alert

if TYPE_CHECKING:
    from email.message import EmailMessage


class AlertFailed(Exception):
    """One delivery of one hook failed (the message says which and why)."""


def event_env(event: Event) -> dict[str, str]:
    """``HAOSCAR_EVENT_*`` variables, so that a one-line shell hook needs no JSON parser."""
    return {
        "HAOSCAR_EVENT_KIND": event.kind,
        "HAOSCAR_EVENT_NODE": event.node,
        "HAOSCAR_EVENT_SEVERITY": event.severity,
        "HAOSCAR_EVENT_MESSAGE": event.message,
        "HAOSCAR_EVENT_WALL": f"{event.wall:.6f}",
        "HAOSCAR_EVENT_JSON": event.to_json(),
    }


def subject(event: Event) -> str:
    return f"[haoscar] {event.severity.upper()} {event.node}: {event.kind} {event.message}"[:200]


@dataclass
class CommandHook:
    command: str
    timeout: float

    def describe(self) -> str:
        return f"command {self.command!r}"

    def send(self, event: Event) -> None:
        # Its own session, so that on a timeout the whole group the hook started is killed, not just the shell.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **event_env(event)},
            start_new_session=True,
        )
        try:
            _, err = proc.communicate((event.to_json() + "\n").encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AlertFailed(f"timed out after {self.timeout:g} s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise AlertFailed(f"exit status {proc.returncode} {tail[0]}".strip())


@dataclass
class WebhookHook:
    url: str
    timeout: float

    def describe(self) -> str:
        return f"webhook {self.url}"

    def send(self, event: Event) -> None:
        import urllib.error  # here, not at the top: the idle daemon does not carry urllib and http (~1.5 MB)
        import urllib.request

        request = urllib.request.Request(
            self.url,
            data=event.to_json().encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "haoscar-ha"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise AlertFailed(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertFailed(str(reason)) from None


@dataclass
class EmailHook:
    server: str
    port: int
    mail_from: str
    mail_to: list[str]
    timeout: float
    security: SmtpSecurity = field(default_factory=SmtpSecurity)

    def describe(self) -> str:
        return f"e-mail to {', '.join(self.mail_to)} via {self.server}:{self.port}"

    def message(self, event: Event) -> EmailMessage:
        from email.message import EmailMessage  # imported when a mail is sent (alert_delivery's docstring)
        from email.utils import formatdate, make_msgid

        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = ", ".join(self.mail_to)
        msg["Subject"] = subject(event)
        msg["Date"] = formatdate(event.wall, localtime=False)
        msg["Message-ID"] = make_msgid("haoscar")
        body = [event.message, "", f"kind: {event.kind}", f"node: {event.node}", f"severity: {event.severity}"]
        body += [f"{key}: {value}" for key, value in sorted(event.data.items())]
        body += ["", json.dumps(event.to_dict(), indent=2, default=str)]
        msg.set_content("\n".join(body) + "\n")
        return msg

    def send(self, event: Event) -> None:
        import smtplib

        try:
            send_mail(self.server, self.port, self.timeout, self.security, self.message(event))
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertFailed(str(exc) or type(exc).__name__) from None


Hook = CommandHook | WebhookHook | EmailHook


def hook_for(alert: Alert) -> Hook:
    if alert.kind == "command":
        assert alert.command is not None
        return CommandHook(alert.command, alert.timeout)
    if alert.kind == "webhook":
        assert alert.webhook is not None
        return WebhookHook(alert.webhook, alert.timeout)
    assert alert.smtp_server is not None
    security = SmtpSecurity.from_alert(alert)
    return EmailHook(alert.smtp_server, alert.smtp_port, alert.mail_from, alert.recipients, alert.timeout, security)


@dataclass
class Route:
    hook: Hook
    min_severity: str
    sent: int = 0
    failed: int = 0
    last_error: str | None = None


class AlertDispatcher:
    """The bus sink for alerts: sends each event to every hook whose minimum severity it reaches."""

    def __init__(self, routes: Sequence[Route], log: Callable[[str], None], limit: KindLimit | None = None) -> None:
        self.routes = list(routes)
        self._log = log
        self.limit = limit or KindLimit()  # bounded alerts per kind and window (docs/ha.md, Alerts)

    @classmethod
    def from_spec(cls, alerts: Sequence[Alert], log: Callable[[str], None]) -> AlertDispatcher:
        return cls([Route(hook_for(alert), alert.min_severity) for alert in alerts], log)

    def __call__(self, event: Event) -> None:
        if not any(at_least(event, route.min_severity) for route in self.routes):
            return  # only alerts that would be sent count against the limit
        send, first_held = self.limit.allow(event.kind)
        if first_held:
            self._log(f"alerts: more than {self.limit.per_window} {event.kind} in {self.limit.window:g} s; "
                      "the rest of this window are not sent (they are in events.jsonl)")  # fmt: skip
        if not send:
            return
        for route in self.routes:
            if not at_least(event, route.min_severity):
                continue
            try:
                route.hook.send(event)
            except Exception as exc:
                route.failed += 1
                route.last_error = str(exc)
                self._log(f"alert {route.hook.describe()} failed for {event.kind}: {exc}")
            else:
                route.sent += 1

    def stats(self) -> list[dict[str, object]]:
        return [
            {
                "hook": r.hook.describe(),
                "min_severity": r.min_severity,
                "sent": r.sent,
                "failed": r.failed,
                "last_error": r.last_error,
            }
            for r in self.routes
        ]


def daemon_bus(ha: HA, node: str, state_dir: Path, log_stream: IO[str] | None = None) -> EventBus:
    """The daemon's bus: a stderr log, the JSON-lines store under the state directory and the spec's alerts (a
    sink like the others, added here so that the kernel's bus never needs the spec or the hooks)."""
    bus = EventBus.from_config(node, state_dir, log_stream)
    if ha.alerts:
        bus.add_sink("alerts", AlertDispatcher.from_spec(ha.alerts, log=bus.log_error))
    return bus
