"""Keys per purpose, with key ids, so a key can be replaced while the cluster runs.

Three purposes, one file each in the key directory (``keys/`` beside ``ha.key_file``, so ``/etc/haoscar/keys``):

- ``heartbeat.key``: the heads' heartbeats (both heads only);
- ``lease.key``: the witness lease (both heads and the witness: the only key a witness holds);
- ``replication.key``: the database channel and the rsync daemon between the heads (both heads only).

A file is a *keyring*: the ``current`` key (senders sign with it), optionally the ``staged`` key (accepted, not yet
used to sign: every host learns a new key before anybody signs with it) and the ``previous`` key (accepted for
``grace`` seconds after this process loaded the keyring that made it previous, so the hosts may switch one after the
other). Every key has an id that travels with each packet, so a receiver knows which key to check with::

    # haoscar keyring: heartbeat
    current 2 <hex>
    previous 1 <hex>
    grace 60

A file holding a single hex line (the old ``ha.key``) is a keyring whose current key has id 0. The spec's
``ha.key_file`` is used for every purpose only while the key directory holds no purpose key at all; once one
exists, a missing one is an error, never a silent fall back to the shared key (a witness needs only ``lease.key``).
"""

from __future__ import annotations

import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write

PURPOSES: Final = ("heartbeat", "lease", "replication")
WITNESS_PURPOSES: Final = ("lease",)
KEY_BYTES: Final = 32
MIN_KEY_BYTES: Final = 16
DEFAULT_GRACE_S: Final = 60.0
MAX_KEY_ID: Final = 2**32 - 1  # it travels in a 32-bit header field


@dataclass(frozen=True)
class Key:
    id: int
    secret: bytes = b""

    def __repr__(self) -> str:  # never a secret in a log or a traceback
        return f"Key(id={self.id})"


@dataclass(frozen=True)
class KeyringFile:
    """What one keyring file holds."""

    purpose: str
    current: Key
    previous: Key | None = None
    staged: Key | None = None
    grace_s: float = DEFAULT_GRACE_S

    def render(self) -> str:
        lines = [f"# haoscar keyring: {self.purpose} (mode 0600; `haoscar keys rotate` replaces it)"]
        for label, key in (("current", self.current), ("staged", self.staged), ("previous", self.previous)):
            if key is not None:
                lines.append(f"{label} {key.id} {key.secret.hex()}")
        lines.append(f"grace {self.grace_s:g}")
        return "\n".join(lines) + "\n"

    def next_id(self) -> int:
        ids = [k.id for k in (self.current, self.previous, self.staged) if k is not None]
        return (max(ids) % MAX_KEY_ID) + 1

    def ids(self) -> dict[str, int | None]:
        return {
            "current": self.current.id,
            "staged": self.staged.id if self.staged else None,
            "previous": self.previous.id if self.previous else None,
        }


def new_key(key_id: int) -> Key:
    return Key(key_id, secrets.token_bytes(KEY_BYTES))


def _secret(text: str, path: Path) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise UserError(
            f"key file {path} holds a key of {len(key)} bytes; use at least {MIN_KEY_BYTES} (`haoscar ha keygen`)"
        )
    return key


def parse_keyring(text: str, purpose: str, path: Path) -> KeyringFile:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) == 1 and " " not in lines[0]:
        return KeyringFile(purpose, Key(0, _secret(lines[0], path)))  # the single shared key of older versions
    found: dict[str, Key] = {}
    grace = DEFAULT_GRACE_S
    for number, line in enumerate(lines, 1):
        parts = line.split()
        try:
            if parts[0] == "grace" and len(parts) == 2:
                grace = float(parts[1])
                continue
            if parts[0] in ("current", "staged", "previous") and len(parts) == 3 and parts[0] not in found:
                found[parts[0]] = Key(int(parts[1]), _secret(parts[2], path))
                continue
        except ValueError:
            pass
        raise UserError(f"key file {path}: line {number} is not `current|staged|previous ID HEX` or `grace SECONDS`")
    if "current" not in found:
        raise UserError(f"key file {path} has no `current` key; run `haoscar ha keygen --purpose {purpose}`")
    return KeyringFile(purpose, found["current"], found.get("previous"), found.get("staged"), grace)


def read_keyring(path: Path, purpose: str) -> KeyringFile:
    """The keyring in ``path``; ``UserError`` when it is missing, readable by group/other, or malformed."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(
            f"key file {path} does not exist; create the keys with `haoscar ha keygen` (see docs/security.md#keys)"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; group and other must not read it: "
            f"run `chmod 600 {path}`"
        )
    return parse_keyring(path.read_text(), purpose, path)


def write_keyring(path: Path, content: KeyringFile) -> None:
    """0600 from the first byte, whole or absent after a crash, in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, content.render(), mode=0o600, compare=False)


def key_dir(key_file: Path) -> Path:
    """The key directory that goes with the spec's ``ha.key_file`` (``/etc/haoscar/keys``)."""
    return key_file.parent / "keys"


def purpose_path(key_file: Path, purpose: str) -> Path:
    return key_dir(key_file) / f"{purpose}.key"


def present_purposes(key_file: Path) -> list[str]:
    return [p for p in PURPOSES if purpose_path(key_file, p).exists()]


def keyring_path(key_file: Path, purpose: str) -> Path:
    """Where the keyring of ``purpose`` is read from: its own file, or (only while there is no purpose key at all)
    the single shared ``ha.key_file`` of older installations."""
    if purpose not in PURPOSES:
        raise UserError(f"unknown key purpose {purpose!r}; use one of {', '.join(PURPOSES)}")
    own = purpose_path(key_file, purpose)
    if own.exists():
        return own
    present = present_purposes(key_file)
    if present:
        raise UserError(
            f"{own} does not exist while {key_dir(key_file)} holds {', '.join(p + '.key' for p in present)}: the "
            f"shared key {key_file} is not used once purpose keys exist; copy {purpose}.key from the other head or run "
            f"`haoscar ha keygen --purpose {purpose}` and distribute it"
        )
    return key_file


def load_keyring_file(key_file: Path, purpose: str) -> KeyringFile:
    return read_keyring(keyring_path(key_file, purpose), purpose)


def load_secret(key_file: Path, purpose: str) -> bytes:
    """The current key of ``purpose``: what a one-key user (the replication channel, rsync) signs with."""
    return load_keyring_file(key_file, purpose).current.secret


def generate_keyrings(
    directory: Path,
    purposes: tuple[str, ...] = PURPOSES,
    force: bool = False,
    write: Callable[[Path, str], None] | None = None,
) -> list[Path]:
    """New keyrings (one fresh key, id 1) for ``purposes`` in ``directory``; existing ones are kept unless
    ``force`` (rotating a running cluster is ``haoscar keys rotate``, not this). ``write(path, text)``: the writer of
    a secret file (the CLI passes ``haoscar.keys.write_secret``, safe against a local user's symlinks)."""
    unknown = [p for p in purposes if p not in PURPOSES]
    if unknown:
        raise UserError(f"purposes: unknown key purpose {unknown[0]!r}; use {', '.join(PURPOSES)}")
    paths = [directory / f"{p}.key" for p in purposes]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UserError(f"{', '.join(existing)} already {verb}; pass --force to replace them (`haoscar keys rotate` "
                        "replaces keys of a running cluster without downtime)")  # fmt: skip
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for purpose, path in zip(purposes, paths, strict=True):
        content = KeyringFile(purpose, new_key(1))
        if write is None:
            write_keyring(path, content)
        else:
            write(path, content.render())
    return paths


class Keyring:
    """The keys one process signs and verifies with; ``update`` takes a reloaded file (SIGHUP)."""

    def __init__(self, content: KeyringFile, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.content = content
        self.loaded = clock()

    @classmethod
    def of_secret(cls, secret: bytes, purpose: str = "heartbeat") -> Keyring:
        return cls(KeyringFile(purpose, Key(0, secret)))

    @property
    def signing(self) -> Key:
        return self.content.current

    def update(self, content: KeyringFile) -> None:
        # The grace of a previous key counts from the load that made it previous, not from every reload.
        if content.previous != self.content.previous:
            self.loaded = self.clock()
        self.content = content

    def secret_for(self, key_id: int) -> bytes | None:
        """The key a packet with ``key_id`` is checked with; None for an unknown, retired or expired id."""
        c = self.content
        if key_id == c.current.id:
            return c.current.secret
        if c.staged is not None and key_id == c.staged.id:
            return c.staged.secret
        if c.previous is not None and key_id == c.previous.id and self.clock() - self.loaded < c.grace_s:
            return c.previous.secret
        return None
