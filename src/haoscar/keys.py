"""The shared HMAC key of the heads and the witness: generated 0600, refused when others could read it."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write

KEY_BYTES = 32


def generate_key(path: Path, force: bool = False) -> Path:
    """Write a new random key (hex) to ``path`` with mode 0600; an existing key is kept unless ``force``."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to replace it (then copy it to every head and witness)")
    # 0600 from the first byte: the umask must not widen it, and the key must be whole or absent after a crash.
    atomic_write(path, secrets.token_hex(KEY_BYTES) + "\n", mode=0o600, compare=False)
    return path


def load_key(path: Path) -> bytes:
    """The key bytes. Raises ``UserError`` when the file is missing, readable by group/other, or too short."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"HA key file {path} does not exist; create it with `haoscar ha keygen --out {path}`") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"HA key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; group and other must not read it: "
            f"run `chmod 600 {path}`"
        )
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < 16:
        raise UserError(f"HA key file {path} holds {len(key)} bytes; use at least 16 (`haoscar ha keygen`)")
    return key
