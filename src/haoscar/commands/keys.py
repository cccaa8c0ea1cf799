"""``haoscar keys rotate``: replace the HA keys and haoscar's ssh key of a running cluster, without downtime.

The HMAC keys (heartbeat, lease, replication; ``haoscar.keyring``) change in three steps, each written to every
host that holds the key (both heads; the witness only the lease key) and followed by a reload of its daemons:

1. **stage**: every keyring gets the new key as ``staged``: accepted, not yet used to sign. Nobody signs with a key
   another host does not know yet, so no packet is dropped whichever host reloads first.
2. **switch**: the new key becomes ``current`` (senders sign with it) and the old one ``previous``, accepted for
   ``grace_s`` after each receiver loaded it: the hosts switch one after the other without a gap.
3. **retire**: after the grace period the old key is removed everywhere; a packet signed with it is dropped
   (``bad_mac``) from then on, and it already was, by every receiver, once its grace had run out.

An installation that still has the single shared ``ha.key_file`` is first split: every host gets one keyring per
purpose it needs, all holding the old shared key (id 0), then the shared file is removed from every host, so the
witness is left with ``lease.key`` only; the rotation then replaces each key as above.

The ssh key (``STATE/ssh/id_ed25519``, ``provision/sshkeys.py``): a new key pair is made beside it, its public key
added to ``authorized_keys`` on both heads and the witness, a login with it checked on each, then it replaces the
old pair and the old public key is removed from every ``authorized_keys``.

The hosts are reached like ``install complete`` does (``commands.install_complete.Transport``: this head locally,
the others over ssh with haoscar's key); a daemon reloads with ``systemctl reload haoscar-{ha,witness}.service``
(SIGHUP; the HA daemon also takes ``reload-keys`` on its control socket).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.install_complete import Host, Transport, hosts_of, ssh_transports
from haoscar.errors import UserError
from haoscar.keyring import (
    DEFAULT_GRACE_S,
    PURPOSES,
    WITNESS_PURPOSES,
    Key,
    KeyringFile,
    new_key,
    parse_keyring,
    purpose_path,
)
from haoscar.spec.models import ClusterSpec

ROTATABLE = (*PURPOSES, "ssh")
RELOAD_COMMAND = "systemctl reload haoscar-{what}.service"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"

__all__ = ["RELOAD_COMMAND", "ROTATABLE", "KeyRotation", "RotateKeys", "RotateReport", "Rotated", "rotate"]


@dataclass(frozen=True)
class RotateKeys:
    spec_file: Path
    purpose: str = "all"
    """heartbeat, lease, replication, ssh or all."""
    grace_s: float = DEFAULT_GRACE_S
    """How long receivers still accept the old key after switching (and how long the rotation waits)."""
    settle_s: float = 1.0
    """Pause after each reload, so every daemon has handled it before the next step."""
    ssh_user: str = "root"
    ssh_port: int = 22
    authorized_keys: str = AUTHORIZED_KEYS
    """Where the ssh key is authorized on each host."""


@dataclass
class Rotated:
    purpose: str
    hosts: list[str]
    old: int | str | None
    """The old key id (ssh: the old public key's comment and type)."""
    new: int | str | None


@dataclass
class RotateReport:
    rotated: list[Rotated] = field(default_factory=list)
    split_from_shared_key: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def purposes_of(purpose: str) -> tuple[str, ...]:
    if purpose == "all":
        return ROTATABLE
    if purpose not in ROTATABLE:
        raise UserError(f"purpose: {purpose!r} is not one of {', '.join(ROTATABLE)} or all")
    return (purpose,)


def holders(spec: ClusterSpec, purpose: str) -> list[Host]:
    """The hosts that hold a key of ``purpose``: both heads; the witness only the lease key."""
    return [h for h in hosts_of(spec) if h.role != "witness" or purpose in WITNESS_PURPOSES]


class KeyRotation:
    """The three steps of an HMAC key rotation over ``transports`` (host name -> door)."""

    def __init__(
        self,
        spec: ClusterSpec,
        transports: dict[str, Transport],
        *,
        grace_s: float = DEFAULT_GRACE_S,
        settle_s: float = 1.0,
        reload_command: str = RELOAD_COMMAND,
        progress: Callable[[str], None] = lambda line: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if grace_s <= 0:
            raise UserError("grace_s: must be positive (receivers must accept the old key while hosts switch)")
        self.spec = spec
        self.transports = transports
        self.grace_s = grace_s
        self.settle_s = settle_s
        self.reload_command = reload_command
        self.say = progress
        self.sleep = sleep
        self.key_file = Path(spec.ha.key_file)
        missing = [h.name for h in hosts_of(spec) if h.name not in transports]
        if missing:
            raise UserError(f"no way to reach {', '.join(missing)}; give an address for each head and the witness")

    def _door(self, host: Host) -> Transport:
        return self.transports[host.name]

    def _write(self, purpose: str, content: KeyringFile) -> None:
        path = purpose_path(self.key_file, purpose)
        for host in holders(self.spec, purpose):
            self._door(host).write(str(path), content.render().encode(), 0o600)
            self._door(host).run(f"chmod 700 {shlex.quote(str(path.parent))}")

    def reload(self, purposes: tuple[str, ...], step: str = "") -> None:
        """Every daemon that uses one of ``purposes`` re-reads its keys (all files were written before)."""
        witness_too = any(p in WITNESS_PURPOSES for p in purposes)
        for host in hosts_of(self.spec):
            if host.role == "witness" and not witness_too:
                continue
            what = "witness" if host.role == "witness" else "ha"
            code, output = self._door(host).run(self.reload_command.format(what=what, node=host.name))
            if code != 0:
                raise UserError(
                    f"reloading the {what} daemon's keys on {host.name} failed ({code}): {output}; the rotation "
                    f"stopped at its {step or 'reload'} step: fix that host and run `haoscar keys rotate` again"
                    + (f" within {self.grace_s:g} s (the old keys' grace period)" if step == "switch" else "")
                )
        self.sleep(self.settle_s)

    def current(self, purpose: str) -> KeyringFile | None:
        """This head's keyring of ``purpose`` (None: this installation still has only the shared key)."""
        path = purpose_path(self.key_file, purpose)
        data = self._door(hosts_of(self.spec)[0]).read(str(path))
        return None if data is None else parse_keyring(data.decode(errors="replace"), purpose, path)

    def split_shared_key(self) -> None:
        """Older installations: one keyring per purpose holding the shared key (id 0), then the shared file goes,
        so the witness keeps only the lease key."""
        first = hosts_of(self.spec)[0]
        data = self._door(first).read(str(self.key_file))
        if data is None:
            raise UserError(
                f"neither {purpose_path(self.key_file, 'heartbeat').parent} nor {self.key_file} exists on "
                f"{first.name}; make the keys with `haoscar ha keygen` first"
            )
        shared = parse_keyring(data.decode(errors="replace"), "heartbeat", self.key_file).current
        self.say(f"splitting the shared key {self.key_file} into one key per purpose")
        for purpose in PURPOSES:
            self._write(purpose, KeyringFile(purpose, Key(0, shared.secret), grace_s=self.grace_s))
        self.reload(PURPOSES, "split")
        for host in hosts_of(self.spec):
            self._door(host).run(f"rm -f {shlex.quote(str(self.key_file))}")

    def rotate(self, purposes: tuple[str, ...]) -> list[Rotated]:
        """Stage, switch, wait for the grace period, retire: every purpose's steps together."""
        if not purposes:
            return []
        old = {p: self.current(p) for p in purposes}
        if any(content is None for content in old.values()):
            raise UserError(f"{purpose_path(self.key_file, purposes[0]).parent} is incomplete on this head")
        before = {p: c for p, c in old.items() if c is not None}
        fresh = {p: new_key(c.next_id()) for p, c in before.items()}
        self.say(f"staging new {', '.join(purposes)} keys (accepted, not used yet)")
        for p, c in before.items():
            # A previous key is kept: after a rotation that stopped at its switch, a host still signing with it
            # must not be cut off by this re-run's first step.
            self._write(p, KeyringFile(p, c.current, c.previous, fresh[p], self.grace_s))
        self.reload(purposes, "stage")
        self.say(f"switching to the new keys; the old ones stay accepted for {self.grace_s:g} s")
        for p, c in before.items():
            self._write(p, KeyringFile(p, fresh[p], c.current, None, self.grace_s))
        self.reload(purposes, "switch")
        self.sleep(self.grace_s)
        self.say("retiring the old keys")
        for p in before:
            self._write(p, KeyringFile(p, fresh[p], None, None, self.grace_s))
        self.reload(purposes, "retire")
        return [Rotated(p, [h.name for h in holders(self.spec, p)], before[p].current.id, fresh[p].id) for p in before]


def rotate_hmac(rotation: KeyRotation, purposes: tuple[str, ...], report: RotateReport) -> None:
    hmac_purposes = tuple(p for p in purposes if p in PURPOSES)
    if not hmac_purposes:
        return
    if all(rotation.current(p) is None for p in PURPOSES):
        rotation.split_shared_key()
        report.split_from_shared_key = True
    report.rotated += rotation.rotate(hmac_purposes)


def rotate(env: Env, request: RotateKeys) -> RotateReport:
    """Rotate the keys named by ``request.purpose`` on both heads and the witness (run it on the primary)."""
    from haoscar.commands.ssh_rotation import rotate_ssh_key
    from haoscar.spec import load_spec

    purposes = purposes_of(request.purpose)
    spec = load_spec(request.spec_file)
    started = env.clock.monotonic()
    transports = ssh_transports(spec, env.state_dir, request.ssh_user, request.ssh_port)
    report = RotateReport()
    rotation = KeyRotation(spec, transports, grace_s=request.grace_s, settle_s=request.settle_s, progress=env.progress)
    rotate_hmac(rotation, purposes, report)
    if "ssh" in purposes:
        old, new = rotate_ssh_key(
            env, spec, transports, user=request.ssh_user, port=request.ssh_port, authorized_keys=request.authorized_keys
        )
        report.rotated.append(Rotated("ssh", list(transports), old, new))
    report.seconds = round(env.clock.monotonic() - started, 2)
    return report
