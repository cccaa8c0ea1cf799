"""The keyrings a daemon uses, reloadable while it runs (SIGHUP or the control socket's ``reload-keys``).

A head signs and checks heartbeats with the heartbeat keyring and talks to the witness with the lease keyring;
the witness loads only the lease keyring (``haoscar.keyring``). A reload that fails (a file missing, mode 0644,
malformed) keeps the keys in use: a daemon never loses its keys to a bad edit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.keyring import PURPOSES, Keyring, keyring_path, load_keyring_file


class KeySet:
    def __init__(
        self, rings: dict[str, Keyring], key_file: Path | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rings = rings
        self.key_file = key_file  # None: fixed keys (tests), nothing to reload
        self.clock = clock

    @classmethod
    def load(
        cls, key_file: Path, purposes: tuple[str, ...] = PURPOSES, clock: Callable[[], float] = time.monotonic
    ) -> KeySet:
        """The keyrings of ``purposes`` for the spec's ``ha.key_file`` (``UserError`` naming the file to fix)."""
        return cls({p: Keyring(load_keyring_file(key_file, p), clock) for p in purposes}, key_file, clock)

    @classmethod
    def of_secret(cls, secret: bytes, purposes: tuple[str, ...] = PURPOSES) -> KeySet:
        """One fixed key for every purpose (unit tests; the shared key of older installations)."""
        return cls({p: Keyring.of_secret(secret, p) for p in purposes})

    def __getitem__(self, purpose: str) -> Keyring:
        return self.rings[purpose]

    def reload(self) -> dict[str, Any]:
        """Re-read every keyring; ``{"ok": bool, "keys": {purpose: ids}, "error": ...}``. All or nothing."""
        if self.key_file is None:
            return {"ok": True, "keys": self.describe(), "note": "fixed keys; nothing to reload"}
        try:
            fresh = {p: load_keyring_file(self.key_file, p) for p in self.rings}
        except (UserError, OSError) as exc:
            return {"ok": False, "error": str(exc), "keys": self.describe()}
        for purpose, content in fresh.items():
            self.rings[purpose].update(content)
        return {"ok": True, "keys": self.describe()}

    def describe(self) -> dict[str, Any]:
        """Key ids and files per purpose, for status (never a secret)."""
        out: dict[str, Any] = {}
        for purpose, ring in self.rings.items():
            ids: dict[str, Any] = dict(ring.content.ids())
            if self.key_file is not None:
                try:
                    ids["file"] = str(keyring_path(self.key_file, purpose))
                except UserError:
                    ids["file"] = None
            out[purpose] = ids
        return out
