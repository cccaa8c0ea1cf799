"""Fencing: make sure the peer head cannot hold the VIP or run services any more, behind one interface.

Methods (``ha.fencing.method``):

- ``lab``: ask the lab controller to crash the peer's lab host. The daemon runs inside a lab host and stays
  lab-agnostic: it writes one JSON line ``{"action": "off", "host": NAME}`` to the UNIX socket named by
  ``options.socket`` and reads ``{"ok": true|false, "message": ...}`` (``haoscar.scenarios.ha_lab`` serves it).
- ``fence-agents``: run an installed ``fence_*`` agent (``agent``; a name on PATH or a path) with the standard
  key=value lines on stdin (``options`` plus ``action=off``); exit status 0 = fenced.
- ``ssh``: best effort, ``ssh host command`` (``options.host`` defaults to the peer, ``options.command`` to
  ``poweroff -f``; ``user``, ``port``, ``identity`` (a private key file) and ``known_hosts`` (a known hosts file;
  a host key is then accepted the first time it is seen) are optional). Never prompts (BatchMode). Success only
  means the command ran; it cannot prove the peer is down.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass

from haoscar.spec.models import Fencing


@dataclass(frozen=True)
class FenceResult:
    ok: bool
    method: str
    target: str
    message: str
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _fill(value: str, peer: str) -> str:
    return value.replace("{peer}", peer)


async def _run(argv: list[str], stdin: bytes | None, timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"timed out after {timeout:g} s"
    return proc.returncode if proc.returncode is not None else -1, out.decode(errors="replace").strip()


async def _lab(config: Fencing, peer: str) -> tuple[bool, str]:
    path = config.options.get("socket")
    if not path:
        return False, "fencing method lab needs options.socket (the lab's fencing socket)"
    host = _fill(config.options.get("host", "{peer}"), peer)
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps({"action": config.options.get("action", "off"), "host": host}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    try:
        reply = json.loads(line)
    except ValueError:
        return False, f"the lab fencing socket answered {line[:80]!r}"
    return bool(reply.get("ok")), str(reply.get("message", ""))


async def _agent(config: Fencing, peer: str) -> tuple[bool, str]:
    agent = config.agent or ""
    path = agent if "/" in agent else shutil.which(agent)
    if not path:
        return False, f"fence agent {agent!r} is not installed (install the fence-agents package or give a path)"
    options = {"action": "off", "plug": peer} | {k: _fill(v, peer) for k, v in config.options.items()}
    stdin = "".join(f"{key}={value}\n" for key, value in options.items()).encode()
    code, out = await _run([path], stdin, config.timeout)
    last = out.splitlines()[-1] if out else ""
    return code == 0, f"{agent} exit {code}" + (f": {last}" if last else "")


async def _ssh(config: Fencing, peer: str) -> tuple[bool, str]:
    host = _fill(config.options.get("host", "{peer}"), peer)
    user = config.options.get("user")
    command = config.options.get("command", "poweroff -f")
    ssh = config.options.get("ssh", "ssh")
    target = f"{user}@{host}" if user else host
    argv = [ssh, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR"]
    if "port" in config.options:
        argv += ["-p", config.options["port"]]
    if "identity" in config.options:
        argv += ["-i", config.options["identity"], "-o", "IdentitiesOnly=yes"]
    if "known_hosts" in config.options:
        argv += ["-o", f"UserKnownHostsFile={config.options['known_hosts']}", "-o", "StrictHostKeyChecking=accept-new"]
    argv += [target, *shlex.split(command)]
    code, out = await _run(argv, None, config.timeout)
    return code == 0, f"ssh {target} {command}: exit {code}" + (f": {out[-200:]}" if out else "")


async def fence(config: Fencing, peer: str) -> FenceResult:
    """Fence ``peer`` with the configured method; never raises (a failure is a result with ``ok=False``)."""
    started = time.monotonic()
    methods = {"lab": _lab, "fence-agents": _agent, "ssh": _ssh}
    method = methods.get(config.method)
    if method is None:
        return FenceResult(False, config.method, peer, "no fencing method configured", 0.0)
    try:
        ok, message = await asyncio.wait_for(method(config, peer), config.timeout + 1.0)
    except Exception as exc:
        ok, message = False, f"{type(exc).__name__}: {exc}"
    return FenceResult(ok, config.method, peer, message, round(time.monotonic() - started, 3))
