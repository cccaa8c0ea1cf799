"""Fencing: make sure the peer head cannot hold the VIP or run services any more, behind one interface.

Methods (``ha.fencing.method``):

- ``lab``: ask the lab controller to crash the peer's lab host. The daemon runs inside a lab host and stays
  lab-agnostic: it writes one JSON line ``{"action": "off", "host": NAME}`` to the UNIX socket named by
  ``options.socket`` and reads ``{"ok": true|false, "message": ...}`` (``haoscar.scenarios.ha_lab`` serves it).
- ``fence-agents``: run an installed ``fence_*`` agent (``agent``; a name on PATH or a path) with the standard
  key=value lines on stdin: ``options``, then ``targets[peer]`` over them (e.g. the peer's BMC address), plus
  ``action=off`` and ``plug=PEER``. ``password_file`` is haoscar's, not the agent's: the file (mode 0600, never
  readable by group or others) is read at fence time and its first line goes to the agent as ``password=``, on
  stdin, never on a command line. Fenced = ``off`` exits 0 **and** a second run with ``action=status`` exits 2,
  the fence-agents code for "off": the takeover is never built on the agent's word for the ``off`` alone (with
  ``options.action: reboot`` the agent's exit status is the result: the peer is meant to be on again).
- ``ssh``: best effort, ``ssh host command`` (``options.host`` defaults to the peer, ``options.command`` to
  ``poweroff -f``; ``user``, ``port``, ``identity`` (a private key file) and ``known_hosts`` (a known hosts file;
  a host key is then accepted the first time it is seen) are optional). Never prompts (BatchMode). Success only
  means the command ran; it cannot prove the peer is down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import stat
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


# fence-agents' exit codes for ``action=status`` (the Fence Agent API): 0 = on, 2 = off, anything else = unknown.
STATUS_ON, STATUS_OFF = 0, 2
# Debian's fence agents are Python scripts that warn about deprecated modules on every run: keep that noise out of
# the one line a fence result quotes.
_AGENT_ENV = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}


async def _run(
    argv: list[str], stdin: bytes | None, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=None if env is None else os.environ | env,
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


def agent_options(config: Fencing, peer: str) -> dict[str, str]:
    """The key=value options a fence agent gets to fence ``peer`` (``password_file`` not yet resolved)."""
    merged = {"action": "off", "plug": peer} | dict(config.options) | dict(config.targets.get(peer, {}))
    return {key: _fill(value, peer) for key, value in merged.items()}


def read_password_file(path: str) -> str:
    """The first line of a fence password file; refused unless only its owner may read it (like the keys)."""
    with open(path, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by group or others (mode {mode:o}); chmod 600 {path}")
        lines = handle.read().decode().splitlines()
    if not lines or not lines[0]:
        raise ValueError(f"{path} is empty; write the fence password on its first line")
    return lines[0]


def resolve_password(options: dict[str, str]) -> dict[str, str]:
    """``password_file`` replaced by ``password`` (the agent's own option), read now."""
    if "password_file" not in options:
        return options
    resolved = {key: value for key, value in options.items() if key != "password_file"}
    resolved["password"] = read_password_file(options["password_file"])
    return resolved


def _lines(options: dict[str, str]) -> bytes:
    return "".join(f"{key}={value}\n" for key, value in options.items()).encode()


def _last(out: str) -> str:
    return out.splitlines()[-1].strip() if out else ""


async def _agent(config: Fencing, peer: str) -> tuple[bool, str]:
    ok, message = await _agent_fence(config, peer)
    try:
        secret = resolve_password(agent_options(config, peer)).get("password")
    except (OSError, ValueError):
        secret = None
    # The message goes to events, logs and alerts: an agent in verbose mode echoes its ipmitool command line.
    return ok, message.replace(secret, "***") if secret else message


async def _agent_fence(config: Fencing, peer: str) -> tuple[bool, str]:
    agent = config.agent or ""
    path = agent if "/" in agent else shutil.which(agent)
    if not path:
        return False, f"fence agent {agent!r} is not installed (install the fence-agents package or give a path)"
    try:
        options = resolve_password(agent_options(config, peer))
    except (OSError, ValueError) as exc:
        return False, f"fence password: {exc}"
    code, out = await _run([path], _lines(options), config.timeout, _AGENT_ENV)
    where = f" (ip {options['ip']})" if "ip" in options else ""
    if code == -1:  # no answer within the timeout: an unreachable BMC looks like this
        return False, f"{agent}{where}: {out}"
    said = f"{agent}{where} exit {code}" + (f": {_last(out)}" if out else "")
    if code != 0 or options["action"] != "off":
        # ``action: reboot`` (a choice of ``options``) ends with the peer on again: the agent's own off-then-on
        # sequence, which checks the off itself, is all there is to go by.
        return code == 0, said
    # Confirm: the power is off only when the agent's own status says so (exit 2), asked after the off returned.
    code, out = await _run([path], _lines(options | {"action": "status"}), config.timeout, _AGENT_ENV)
    if code == STATUS_OFF:
        return True, f"{said}; status: off"
    if code == STATUS_ON:
        return False, f"{said}; but status says {peer} is still on"
    return False, f"{said}; status unknown (exit {code}" + (f": {_last(out)})" if out else ")")


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
    # fence-agents runs the agent twice (off, then status), each within ``timeout``.
    budget = config.timeout * (2 if config.method == "fence-agents" else 1) + 1.0
    try:
        ok, message = await asyncio.wait_for(method(config, peer), budget)
    except Exception as exc:
        ok, message = False, f"{type(exc).__name__}: {exc}"
    return FenceResult(ok, config.method, peer, message, round(time.monotonic() - started, 3))
