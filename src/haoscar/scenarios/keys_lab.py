"""Key rotation in a running HA lab: ``commands.keys.KeyRotation`` driven through the lab hosts' files.

Each lab host's ``/etc/haoscar`` is a private directory seen from here as ``lab.host_dir(host)/etc/haoscar``, so
the doors read and write there directly; a reload is the control socket's ``reload-keys`` on a head (which answers
with the key ids it now uses, or why it kept the old ones) and SIGHUP to the witness, as ``systemctl reload`` does.
"""

from __future__ import annotations

import os
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from haoscar.commands.install_complete import Transport, hosts_of
from haoscar.commands.keys import KeyRotation
from haoscar.scenarios.ha_lab import HaLab

RELOAD = "reload {what} {node}"


@dataclass
class LabDoor:
    """One lab host's files and its daemons' reload, as ``commands.install_complete.Transport``."""

    ha: HaLab
    host: str

    def _path(self, path: str) -> Path:
        return self.ha.lab.host_dir(self.host) / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes, mode: int) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # the mode before the bytes
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        words = shlex.split(command)
        if words[:2] == ["reload", "ha"]:
            reply = self.ha.control(self.host, "reload-keys")
            return (0, str(reply["keys"])) if reply.get("ok") else (1, str(reply.get("error")))
        if words[:2] == ["reload", "witness"]:
            os.kill(self.ha.proc(self.host, "witness").pid, signal.SIGHUP)
            return 0, ""
        if words[:2] == ["chmod", "700"]:
            os.chmod(self._path(words[2]), 0o700)
            return 0, ""
        if words[:2] == ["rm", "-f"]:
            self._path(words[2]).unlink(missing_ok=True)
            return 0, ""
        return 127, f"the lab door does not run {command!r}"


def lab_rotation(ha: HaLab, grace_s: float, settle_s: float = 0.3) -> KeyRotation:
    doors: dict[str, Transport] = {host.name: LabDoor(ha, host.name) for host in hosts_of(ha.spec)}
    return KeyRotation(ha.spec, doors, grace_s=grace_s, settle_s=settle_s, reload_command=RELOAD)
