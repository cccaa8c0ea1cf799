"""The highly available head node: run a head's daemon or the witness, read both heads' status, move the role,
make the shared key.

The daemons themselves live in ``haoscar.ha``; these commands check what a person gave them first (spec, node,
key file), so that a mistake is the usual one-line error and not a daemon's crash.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.errors import FieldError, UserError

__all__ = [
    "HA_ACTIONS",
    "BothHeads",
    "HaAction",
    "HaActionDone",
    "HaStatusRequest",
    "KeyWritten",
    "Keygen",
    "RunHead",
    "RunWitness",
    "act",
    "both_heads",
    "keygen",
    "run_head",
    "run_witness",
    "status",
]

HA_ACTIONS = ("switchover", "takeover", "failback")


@dataclass(frozen=True)
class RunHead:
    node: str
    """This head: its host name, or primary / standby."""
    spec_file: Path
    key_file: Path | None = None
    """Overrides the spec's ha.key_file."""


@dataclass(frozen=True)
class RunWitness:
    spec_file: Path
    key_file: Path | None = None
    addresses: list[str] | None = None
    """Listen here instead of ha.witness.addresses."""


@dataclass(frozen=True)
class Keygen:
    out: Path | None = None
    """The single shared key of older installations; None: one key per purpose in ``key_dir``."""
    force: bool = False
    """Replace an existing key."""
    purposes: tuple[str, ...] = ()
    """heartbeat, lease, replication (none: all three)."""
    key_dir: Path = Path("/etc/haoscar/keys")


@dataclass(frozen=True)
class KeyWritten:
    path: Path
    written: tuple[Path, ...] = ()


@dataclass(frozen=True)
class HaStatusRequest:
    node: str | None = None
    """When given, the local daemon must be this head (a check that the state directory is the right one)."""
    timeout: float = 1.0
    """Seconds to wait for the peer's status."""


@dataclass(frozen=True)
class BothHeads:
    local: dict[str, Any]
    """The local daemon's status, from its control socket."""
    peer: dict[str, Any]
    """The peer's own status over HTTP, or ``{"reachable": False, "error": ...}``."""

    def as_dict(self) -> dict[str, Any]:
        return {"local": self.local, "peer": self.peer}


@dataclass(frozen=True)
class HaAction:
    op: str
    """switchover, takeover or failback."""
    force: bool = False
    """takeover only: although this standby's replicated data is stale (loses changes)."""


@dataclass(frozen=True)
class HaActionDone:
    message: str
    forced: bool = False


def run_head(env: Env, request: RunHead) -> None:
    """Check the spec and node, then replace this process with the lean HA daemon (same pid; no return)."""
    from haoscar.ha.__main__ import exec_daemon
    from haoscar.ha.config import node_config
    from haoscar.spec.loader import load_spec

    # Checked here so that a mistake is this command's usual error; the daemon itself does not keep the CLI's
    # modules in memory.
    node_config(load_spec(request.spec_file), request.node, request.key_file)
    exec_daemon(request.node, request.spec_file, env.state_dir, request.key_file)


def run_witness(env: Env, request: RunWitness) -> None:
    """Serve leases in the foreground until SIGTERM; stale marks are kept under STATE/witness/."""
    from haoscar.ha.runner import run_witness as serve
    from haoscar.spec.loader import load_spec

    spec = load_spec(request.spec_file)
    asyncio.run(serve(spec, request.key_file, request.addresses, env.state_dir))


def keygen(env: Env, request: Keygen) -> KeyWritten:
    """Make the keys (mode 0600): one per purpose in ``key_dir`` (both heads get all, the witness only
    ``lease.key``), or with ``out`` the single shared key of older installations."""
    if request.out is not None:
        from haoscar.keys import generate_key

        return KeyWritten(generate_key(request.out, request.force), (request.out,))
    from haoscar.keyring import PURPOSES, generate_keyrings
    from haoscar.keys import write_secret

    def write(path: Path, text: str) -> None:
        write_secret(path, text, force=request.force, what="key")

    written = generate_keyrings(request.key_dir, request.purposes or PURPOSES, request.force, write)
    return KeyWritten(request.key_dir, tuple(written))


def _ask(env: Env, op: str, **params: Any) -> dict[str, Any]:
    from haoscar.ha.control import control_path, request

    return request(control_path(env.state_dir), op, **params)


def both_heads(local: dict[str, Any], timeout: float = 1.0) -> BothHeads:
    """The peer's own status beside ``local`` (a status the caller already has, e.g. from Complete Installation)."""
    from haoscar.ha.both_heads import both_heads as fetch

    both = fetch(local, timeout)
    return BothHeads(both["local"], both["peer"])


def status(env: Env, request: HaStatusRequest) -> BothHeads:
    """Both heads: the local daemon's status and the peer's own (or why it could not be read)."""
    local = _ask(env, "status")
    if request.node is not None and local.get("node") != request.node:
        raise UserError(f"the daemon here is {local.get('node')!r}, not {request.node!r}; pass the right --state-dir")
    if request.timeout <= 0:
        raise FieldError("timeout", f"{request.timeout:g} must be more than 0 seconds, e.g. 1", sep=": ", bare=True)
    return both_heads(local, request.timeout)


def act(env: Env, request: HaAction) -> HaActionDone:
    """Ask the local daemon to move the role; a refusal is a ``UserError`` with the daemon's reason."""
    if request.op not in HA_ACTIONS:
        raise FieldError("op", f"{request.op!r} is not an HA action; use {', '.join(HA_ACTIONS)}", sep=": ", bare=True)
    if request.force and request.op != "takeover":
        raise FieldError("force", f"only a takeover can be forced, not a {request.op}", sep=": ", bare=True)
    params: dict[str, Any] = {"force": request.force} if request.op == "takeover" else {}
    reply = _ask(env, request.op, **params)
    if not reply.get("ok"):
        raise UserError(str(reply.get("error", f"{request.op} refused")))
    return HaActionDone(str(reply.get("message", "ok")), bool(reply.get("forced")))
