"""The ssh part of ``haoscar keys rotate``: haoscar's own key pair (``STATE/ssh/id_ed25519``), authorized on both
heads and the witness, replaced without a moment in which haoscar cannot log in anywhere.

1. a new pair ``id_ed25519.new`` beside the old one;
2. its public key appended to ``authorized_keys`` on every host (the old one stays);
3. a login with the new key checked on every host reached over ssh;
4. the new pair renamed over the old one (the old pair kept as ``id_ed25519.old`` until the end);
5. the old public key removed from every ``authorized_keys``, then ``id_ed25519.old`` deleted.

A failure before step 4 leaves the old key working everywhere (the new public key may stay authorized: its private
half never left this head).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from haoscar.commands.env import Env
from haoscar.commands.install_complete import SshTransport, Transport, hosts_of
from haoscar.errors import UserError
from haoscar.spec.models import ClusterSpec


def _with_line(data: bytes | None, line: str) -> bytes:
    lines = [x for x in (data or b"").decode(errors="replace").splitlines() if x.strip()]
    if line not in lines:
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def _without_line(data: bytes | None, line: str) -> bytes:
    lines = [x for x in (data or b"").decode(errors="replace").splitlines() if x.strip() and x.strip() != line]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _make_pair(env: Env, path: Path) -> str:
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    done = env.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "haoscar", "-f", str(path)])
    if done.returncode != 0:
        raise UserError(f"ssh-keygen could not create {path}: {done.stderr.decode(errors='replace').strip()}")
    os.chmod(path, 0o600)
    return path.with_name(path.name + ".pub").read_text().strip()


def swap_ssh_key(
    env: Env,
    key: Path,
    transports: dict[str, Transport],
    authorized_keys: str,
    check_login: Callable[[Path], None],
) -> tuple[str, str]:
    """Steps 1-5 over ``transports`` (every host holding the key's authorization); ``check_login(new_key)``
    raises when a host does not take the new key. Returns (old public key, new public key)."""
    old_pub = key.with_name(key.name + ".pub").read_text().strip()
    new = key.with_name(key.name + ".new")
    new_pub = _make_pair(env, new)
    for name, door in transports.items():
        env.progress(f"authorizing the new ssh key on {name}")
        door.write(authorized_keys, _with_line(door.read(authorized_keys), new_pub), 0o600)
    check_login(new)
    old = key.with_name(key.name + ".old")
    os.replace(key, old)
    os.replace(key.with_name(key.name + ".pub"), old.with_name(old.name + ".pub"))
    os.replace(new, key)
    os.replace(new.with_name(new.name + ".pub"), key.with_name(key.name + ".pub"))
    for name, door in transports.items():
        env.progress(f"removing the old ssh key from {name}")
        door.write(authorized_keys, _without_line(door.read(authorized_keys), old_pub), 0o600)
    old.unlink(missing_ok=True)
    old.with_name(old.name + ".pub").unlink(missing_ok=True)
    return old_pub, new_pub


def rotate_ssh_key(
    env: Env, spec: ClusterSpec, transports: dict[str, Transport], *, user: str, port: int, authorized_keys: str
) -> tuple[str, str]:
    """Rotate haoscar's ssh key over ``transports``; returns the tails of the old and new public keys."""
    from haoscar.provision.sshkeys import SshIdentity, ensure_identity

    identity = ensure_identity(env.state_dir)
    remote = [h for h in hosts_of(spec)[1:] if h.name in transports]

    def check_login(new_key: Path) -> None:
        argv = SshIdentity(new_key, identity.known_hosts).ssh_argv(port=port)
        for host in remote:
            code, output = SshTransport(host.name, host.address, argv, user).run("true")
            if code != 0:
                raise UserError(f"{host.name} does not take the new ssh key ({code}): {output}; the old key stays")

    old_pub, new_pub = swap_ssh_key(env, identity.key, transports, authorized_keys, check_login)
    # The tail of each public key names it in the report (never the private half).
    return "..." + old_pub.split()[1][-16:], "..." + new_pub.split()[1][-16:]
