"""Helpers of the wizard's tests: a console state with a spec or an image, reading a page's errors, waiting for a
wizard job, reading Server-Sent Events."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from webtest import Browser

from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.images import ImportImage, image_import
from haoscar.commands.nodes import list_nodes
from haoscar.errors import FieldError, UserError
from haoscar.lab.defaults import default_spec
from haoscar.web.render import field_label

_FIELD_ERROR = re.compile(r'<p class="error" id="([a-z_]+)-error">(.*?)</p>', re.S)
_SUMMARY = re.compile(r'<div class="errors" role="alert" id="errors-([a-z_]+)">(.*?)</div>', re.S)
_VALUE = r'<input type="text" id="{name}" name="{name}" value="([^"]*)"'


class FakeWire:
    """A DHCP wire that hands out the frames it was given, then nothing (what `mac collect` reads)."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = list(frames)

    def receive(self, timeout: float) -> bytes | None:
        return self.frames.pop(0) if self.frames else None

    def close(self) -> None:
        pass


def apply_lab_spec(state: Path) -> None:
    """The lab's spec in the database: head1 (primary), head2 (standby), node01-02 (compute), their networks."""
    with Env(state) as env:
        apply_spec(env.database, default_spec())


def import_image(state: Path, name: str) -> None:
    """A tiny root tree imported as ``name`` (the store holds a current version)."""
    tree = state.parent / f"tree-{name}"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "hostname").write_text("golden\n")
    with Env(state) as env:
        image_import(env, ImportImage(name, tree))


def cluster_dump(state: Path) -> list[dict[str, Any]]:
    """What ``node list`` shows: the check that a refused form changed nothing."""
    with Env(state) as env:
        return [row.as_dict() for row in list_nodes(env.database)]


def direct_error(state: Path, command: Callable[[Env, Any], Any], request: Any) -> UserError:
    """The error the command gives when called directly (as the CLI calls it)."""
    with Env(state) as env:
        try:
            command(env, request)
        except UserError as exc:
            return exc
    raise AssertionError(f"{command.__name__} accepted {request!r}")


def field_errors(text: str) -> dict[str, str]:
    """field -> the error shown next to it (unescaped)."""
    return {field: html.unescape(detail) for field, detail in _FIELD_ERROR.findall(text)}


def summary(text: str) -> str:
    """The role=alert summary's text (unescaped, tags dropped)."""
    found = _SUMMARY.search(text)
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))) if found else ""


def typed_value(text: str, name: str) -> str | None:
    found = re.search(_VALUE.format(name=name), text)
    return html.unescape(found.group(1)) if found else None


def expected_next_to_fields(exc: UserError) -> dict[str, str]:
    """What the page must show next to each field for this command error (the CLI's detail, fields named by label)."""
    assert isinstance(exc, FieldError), exc
    out: dict[str, list[str]] = {}
    for problem in exc.problems:
        out.setdefault(problem.field, []).append(problem.text(field_label))
    return {field: " ".join(lines) for field, lines in out.items()}


async def submit(b: Browser, step: str, data: dict[str, str], timeout: float = 120.0) -> aiohttp.ClientResponse:
    """Post a wizard form and, for a job still running, wait for its end; returns the step's page as it is then."""
    response = await b.post(f"/wizard/{step}", data)
    if response.status == 422:
        return response
    assert response.status == 303, (response.status, b.text[-2000:])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await b.client.get(f"/api/wizard/{step}/job")
        state = (await job.json())["state"]
        if state != "running":
            break
        assert loop.time() < deadline, f"the {step} job did not end"
        await asyncio.sleep(0.1)
    return await b.get(response.headers["Location"])


async def next_event(stream: aiohttp.ClientResponse, kind: str, timeout: float = 30.0) -> str:
    """The data line of the next SSE event of ``kind`` (comments and other events skipped)."""
    current = ""

    async def read() -> str:
        nonlocal current
        while True:
            line = (await stream.content.readline()).decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                current = line[len("event: ") :].strip()
            elif line.startswith("data: ") and current == kind:
                return line[len("data: ") :].strip()

    return await asyncio.wait_for(read(), timeout)


async def next_comment(stream: aiohttp.ClientResponse, timeout: float = 30.0) -> str:
    async def read() -> str:
        while True:
            line = (await stream.content.readline()).decode()
            assert line, "the stream ended"
            if line.startswith(":"):
                return line.strip()

    return await asyncio.wait_for(read(), timeout)
