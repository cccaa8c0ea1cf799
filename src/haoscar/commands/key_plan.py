"""Which key files each host gets at set-up (``install complete``): both heads the heartbeat, lease and
replication keys, the witness only the lease key (docs/security.md#keys).

Kept as they are when the primary already has them (a second run changes nothing); an installation that still has
only the single shared ``ha.key_file`` on the primary gets it split, one keyring per purpose holding the shared key
(id 0), so daemons already running with it keep talking; otherwise each purpose gets a fresh key of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import UserError
from haoscar.keyring import PURPOSES, WITNESS_PURPOSES, Key, KeyringFile, new_key, parse_keyring, purpose_path
from haoscar.spec.models import ClusterSpec


@dataclass(frozen=True)
class KeyFile:
    host: str
    path: str
    data: bytes
    mode: int = 0o600


@dataclass(frozen=True)
class KeyPlan:
    files: list[KeyFile]
    generated: list[str]  # purposes that got a new key
    split_shared: bool  # the primary's shared key was split into purpose keyrings
    remove_shared_from: list[str]  # hosts whose shared key file must go (the witness: it needs the lease key only)


def _existing(data: bytes | None, purpose: str, path: Path) -> KeyringFile | None:
    if data is None:
        return None
    try:
        return parse_keyring(data.decode(errors="replace"), purpose, path)
    except UserError:
        return None  # unreadable: replaced by a fresh key, as a bad shared key always was


def plan_keys(spec: ClusterSpec, read_primary: Callable[[str], bytes | None], hosts: list[tuple[str, str]]) -> KeyPlan:
    """``hosts``: (name, role) with role primary / standby / witness; ``read_primary(path)`` reads the primary's
    files. Returns every key file to write, per host."""
    key_file = Path(spec.ha.key_file)
    shared = _existing(read_primary(str(key_file)), "heartbeat", key_file)
    rings: dict[str, KeyringFile] = {}
    generated: list[str] = []
    present = {
        p: _existing(read_primary(str(purpose_path(key_file, p))), p, purpose_path(key_file, p)) for p in PURPOSES
    }
    split = shared is not None and all(ring is None for ring in present.values())
    for purpose, ring in present.items():
        if ring is not None:
            rings[purpose] = ring
        elif split and shared is not None:
            rings[purpose] = KeyringFile(purpose, Key(0, shared.current.secret))
        else:
            rings[purpose] = KeyringFile(purpose, new_key(1))
            generated.append(purpose)
    files = [
        KeyFile(name, str(purpose_path(key_file, purpose)), rings[purpose].render().encode())
        for name, role in hosts
        for purpose in (WITNESS_PURPOSES if role == "witness" else PURPOSES)
    ]
    witnesses = [name for name, role in hosts if role == "witness"]
    return KeyPlan(files, generated, split, witnesses)
