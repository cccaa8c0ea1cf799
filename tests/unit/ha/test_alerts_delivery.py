"""Alert hooks over real protocols on loopback: an aiohttp webhook receiver, an SMTP sink, a shell command."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from haoscar.events import EventBus
from haoscar.ha.alerts import daemon_bus
from haoscar.spec.models import HA, Alert


async def webhook_receiver(received: list[dict[str, Any]], status: int = 200) -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/json"
        received.append(await request.json())
        return web.json_response({"ok": status == 200}, status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook"


class SmtpSink:
    """Just enough of RFC 5321 for smtplib: greeting, EHLO, MAIL, RCPT, DATA, QUIT; messages are kept."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, recipients = "", []
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 sink\r\n")
            elif verb == b"MAIL":
                sender = line.decode().split(":", 1)[1].strip().strip("<>")
                writer.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                recipients.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append((sender, recipients, data[: -len(b".\r\n")]))
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


def bus_with(tmp_path: Path, *alerts: dict[str, Any]) -> tuple[EventBus, io.StringIO]:
    log = io.StringIO()
    ha = HA(alerts=[Alert.model_validate(a) for a in alerts])
    return daemon_bus(ha, "head2", tmp_path, log_stream=log), log


def test_webhook_receives_events_at_or_above_its_severity(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        runner, url = await webhook_receiver(received)
        bus, _ = bus_with(tmp_path, {"webhook": url, "min_severity": "warning", "timeout": 2})
        bus.event("heartbeat", "all networks fine")
        bus.event("link.down", "lost the heartbeat on public", "warning", network="public")
        bus.event("role", "standby -> active", "critical", took_ms=480)
        assert await asyncio.to_thread(bus.flush, 10)
        bus.close()
        await runner.cleanup()

    run(scenario)
    assert [(e["kind"], e["severity"], e["node"]) for e in received] == [
        ("link.down", "warning", "head2"),
        ("role", "critical", "head2"),
    ]
    assert received[1]["data"] == {"took_ms": 480}
    assert received[1]["message"] == "standby -> active"


def test_email_goes_through_the_configured_smtp_server(tmp_path: Path) -> None:
    sink = SmtpSink()

    async def scenario() -> None:
        port = await sink.start()
        bus, log = bus_with(
            tmp_path,
            {
                "email": "ops@lab.haoscar",
                "mail_to": ["oncall@lab.haoscar"],
                "smtp_server": "127.0.0.1",
                "smtp_port": port,
                "mail_from": "haoscar@head2.lab.haoscar",
                "min_severity": "critical",
                "smtp_security": "none",  # the sink is a trusted local relay without TLS
            },
        )
        bus.event("link.down", "lost public", "warning")
        bus.event("role", "standby -> active: primary silent on every network", "critical", took_ms=512)
        assert await asyncio.to_thread(bus.flush, 10)
        bus.close()
        await sink.close()
        assert "events.error" not in log.getvalue()

    run(scenario)
    assert len(sink.messages) == 1
    sender, recipients, raw = sink.messages[0]
    assert sender == "haoscar@head2.lab.haoscar"
    assert recipients == ["ops@lab.haoscar", "oncall@lab.haoscar"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "[haoscar] CRITICAL head2: role standby -> active: primary silent on every network"
    body = message.get_content()
    assert "took_ms: 512" in body


def test_command_hook_gets_json_on_stdin_and_env_vars(tmp_path: Path) -> None:
    out = tmp_path / "hook.out"
    bus, _ = bus_with(
        tmp_path,
        {
            "command": f"cat > {out}.json; "
            f'echo "$HAOSCAR_EVENT_SEVERITY $HAOSCAR_EVENT_KIND $HAOSCAR_EVENT_NODE" > {out}'
        },
    )
    bus.event("resource.escalated", "dhcp failed 6 times", "critical", service="dhcp")
    assert bus.flush(10)
    bus.close()
    assert out.read_text() == "critical resource.escalated head2\n"
    event = json.loads(Path(f"{out}.json").read_text())
    assert event["data"] == {"service": "dhcp"}
    assert event["message"] == "dhcp failed 6 times"


def test_a_failing_hook_is_logged_and_the_others_still_deliver(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        runner, url = await webhook_receiver(received)
        broken_runner, broken_url = await webhook_receiver([], status=500)
        bus, log = bus_with(
            tmp_path,
            {"command": "sleep 20", "timeout": 0.3},
            {"webhook": broken_url},
            {"webhook": "http://127.0.0.1:9/nothing-listens", "timeout": 1},
            {"webhook": url},
        )
        bus.event("role", "active -> stopping", "critical")
        assert await asyncio.to_thread(bus.flush, 15)
        bus.close()
        await runner.cleanup()
        await broken_runner.cleanup()
        errors = log.getvalue()
        assert "alert command 'sleep 20' failed for role: timed out after 0.3 s" in errors
        assert f"alert webhook {broken_url} failed for role: HTTP 500" in errors
        assert "alert webhook http://127.0.0.1:9/nothing-listens failed for role:" in errors
        assert (tmp_path / "ha" / "events.jsonl").read_text().count('"role"') == 1

    run(scenario)
    assert [e["kind"] for e in received] == ["role"]


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        ({"command": "true", "webhook": "http://127.0.0.1/x"}, "exactly one of command, webhook or email"),
        ({"webhook": "ftp://198.18.0.250/x"}, "is not an http(s) URL"),
        ({"email": "ops@lab.haoscar"}, "needs smtp_server"),
        ({"email": "ops", "smtp_server": "127.0.0.1"}, "'ops' is not an e-mail address"),
        ({"command": "true", "min_severity": "debug"}, "min_severity"),
    ],
)
def test_bad_alert_specs_say_what_is_wrong(alert: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Alert.model_validate(alert)
