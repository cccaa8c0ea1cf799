"""The live streams: a MAC that asks for DHCP while `mac collect` listens appears on /live/macs, an installing
node's stage change on /live/installs; heartbeats, the stream caps and the end of a stream with its session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from sqlalchemy import update
from webtest import Browser, make_ctx, run_console
from wizardtest import FakeWire, apply_lab_spec, next_comment, next_event

from haoscar.commands import macs
from haoscar.commands.env import Env
from haoscar.db.models import WebSession
from haoscar.provision.dhcp_packet import build_frame, build_request
from haoscar.provision.install_progress import record_progress
from haoscar.web.live import STREAMS, LiveSettings

MAC = "52:54:00:ab:00:01"


def fast(**changes: float) -> Callable[[web.Application], None]:
    def setup(app: web.Application) -> None:
        app[STREAMS].settings = LiveSettings(**{"heartbeat_s": 15.0, "poll_s": 0.1, **changes})  # type: ignore[arg-type]

    return setup


@pytest.fixture
def lab_state(console_state: Path) -> Path:
    apply_lab_spec(console_state)
    return console_state


async def install_event(stream: ClientResponse, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The next ``install`` event whose row is ``wanted`` (the rows before it are intermediate states)."""
    while True:
        row: dict[str, Any] = json.loads(await next_event(stream, "install"))
        if wanted(row):
            return row


def collect_one(state: Path, mac: str) -> None:
    """`mac collect` hears one DHCP DISCOVER from ``mac`` (its raw socket replaced, as its own tests do)."""
    with Env(state) as env:
        wire = FakeWire([build_frame(build_request(mac, 1, hostname="<b>x</b>"), mac)])
        macs.collect(env, macs.CollectMacs("eth0", timeout=5), source=wire)


def test_a_new_sighting_and_its_assignment_are_pushed(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        stream = await b.client.get("/live/macs")
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert json.loads(await next_event(stream, "free")) == {"free": ["head2", "node01", "node02"]}
        await asyncio.to_thread(collect_one, lab_state, MAC)
        seen = json.loads(await next_event(stream, "sighting"))
        assert (seen["mac"], seen["seen_count"], seen["message_type"], seen["index"]) == (MAC, 1, "DISCOVER", 1)
        with Env(lab_state) as env:
            await asyncio.to_thread(macs.assign, env, macs.AssignMac("node02", MAC))
        assert json.loads(await next_event(stream, "free")) == {"free": ["head2", "node01"]}
        assert json.loads(await next_event(stream, "gone")) == {"key": MAC}
        stream.close()

    run_console(make_ctx(lab_state), scenario, fast())


def test_an_install_stage_change_is_pushed(lab_state: Path) -> None:
    with Env(lab_state) as env:
        macs.assign(env, macs.AssignMac("node01", MAC))

    async def scenario(b: Browser) -> None:
        await b.login()
        stream = await b.client.get("/live/installs")
        assert stream.status == 200
        with Env(lab_state) as env:
            await asyncio.to_thread(record_progress, env.database, lab_state, MAC, "image", 40, nbytes=4_000_000)
        # The installer's report writes its progress, then the node's state, and a poll reads the two apart: it may
        # show the node installing before its stage (seen once in make test); the row that follows carries both.
        row = await install_event(stream, lambda r: r["install_state"] == "installing" and r["stage"] is not None)
        assert (row["node"], row["stage"], row["percent"]) == ("node01", "image", 40)
        with Env(lab_state) as env:
            await asyncio.to_thread(record_progress, env.database, lab_state, MAC, "bootloader", 90)
        row = await install_event(stream, lambda r: r["stage"] != "image")
        assert (row["node"], row["install_state"], row["stage"], row["percent"]) == (
            "node01",
            "installing",
            "bootloader",
            90,
        )
        stream.close()

    run_console(make_ctx(lab_state), scenario, fast())


def test_a_quiet_stream_sends_heartbeats(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        stream = await b.client.get("/live/macs")
        assert await next_comment(stream) == ": keepalive"
        stream.close()

    run_console(make_ctx(lab_state), scenario, fast(heartbeat_s=0.3))


def test_streams_are_capped_per_session_and_need_a_login(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        refused = await b.client.get("/live/macs")
        assert refused.status == 401
        await b.login()
        first = await b.client.get("/live/macs")
        await next_event(first, "free")
        second = await b.client.get("/live/macs")
        assert second.status == 429 and "too many live streams" in await second.text()
        first.close()

    run_console(make_ctx(lab_state), scenario, fast(per_session=1))


def test_a_stream_ends_when_its_session_does(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/macs")
        stream = await b.client.get("/live/macs")
        await next_event(stream, "free")
        await b.post("/logout", {})
        assert json.loads(await next_event(stream, "end")) == {"reason": "not logged in"}
        assert (await stream.content.read()).strip() == b""  # the server ended the stream

    run_console(make_ctx(lab_state), scenario, fast())


def test_a_stream_ends_when_its_session_expires(lab_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        stream = await b.client.get("/live/installs")
        assert stream.status == 200
        with Env(lab_state) as env, env.database.session() as session:  # the login is older than its lifetime now
            session.execute(update(WebSession).values(created_s=0.0))
        assert json.loads(await next_event(stream, "end")) == {"reason": "your session expired; log in again"}

    run_console(make_ctx(lab_state), scenario, fast())
