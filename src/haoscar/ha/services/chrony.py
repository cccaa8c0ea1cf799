"""Kind ``chrony``: the cluster's time server (NTP) on the compute-facing address of the active head.

Compute nodes take their time from the private alias (the installer points systemd-timesyncd at it), so the
server must move with the alias: chronyd runs as the daemon's child on the active head only, bound to the alias
(the group adds it before the services start), answering the private network. Healthy = the process lives and
an NTP client request to ADDRESS:123 is answered by a server that says it is synchronised (leap indicator not 3).

chronyd runs with ``-x``: it never steps or slews this head's clock. It serves the head's clock as a local
reference (``local stratum 10``), so both heads serve the same time as long as their own clocks agree; each
head's clock is kept by its own ordinary NTP client from the site's servers (docs/install.md "Joining the
cluster"). ``-x`` also keeps a lab head, which shares the machine's kernel clock, from ever changing it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.ha.services.base import ServiceEnv
from haoscar.ha.services.shell import CommandService
from haoscar.spec.models import Service
from haoscar.spec.topology import compute_facing_address

NTP_PORT = 123
_UNSYNCHRONISED = 3  # NTP leap indicator "clock not synchronised"


def render_chrony_conf(address: str, subnet: str, run_dir: Path) -> str:
    return "\n".join(
        [
            "# written by haoscar (HA service kind chrony); rewritten at every start",
            f"bindaddress {address}",
            f"port {NTP_PORT}",
            f"allow {subnet}",
            # Limits (every listener has them): answer a client at most every 2 s on average after a burst of
            # 16, and keep the per-client log bounded. timesyncd polls every 32-2048 s.
            "ratelimit interval 1 burst 16 leak 2",
            "clientloglimit 1048576",
            "local stratum 10",  # serve this head's clock even with no upstream source (-x: never change it)
            "cmdport 0",  # no chronyc socket: nothing here is managed at run time
            f"pidfile {run_dir}/chronyd.pid",
            "",
        ]
    )


def ntp_request() -> bytes:
    return bytes([0x23]) + bytes(47)  # LI 0, version 4, mode 3 (client)


def ntp_answer(reply: bytes) -> str | None:
    """None when ``reply`` is a synchronised server's answer, else what is wrong with it."""
    if len(reply) < 48:
        return f"a {len(reply)}-byte NTP reply"
    leap, mode, stratum = reply[0] >> 6, reply[0] & 7, reply[1]
    if mode != 4:
        return f"NTP reply of mode {mode}, not 4 (server)"
    if leap == _UNSYNCHRONISED or stratum == 0 or stratum >= 16:
        return f"the server says it is not synchronised (leap {leap}, stratum {stratum})"
    transmit = struct.unpack("!I", reply[40:44])[0]
    return None if transmit else "NTP reply without a transmit time"


def _query(address: str, timeout: float) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(ntp_request(), (address, NTP_PORT))
            reply, _ = sock.recvfrom(512)
        except OSError as exc:
            return f"no NTP answer from {address}:{NTP_PORT}: {exc}"
    return ntp_answer(reply)


class ChronyService(CommandService):
    def __init__(self, spec: Service, env: ServiceEnv) -> None:
        self.address = self._address(env)
        self.run_dir = env.service_dir(spec.name)
        self.conf = self.run_dir / "chrony.conf"
        start = f"exec chronyd -d -x -u root -f {self.conf}"
        super().__init__(spec.model_copy(update={"start": spec.start or start, "stop": None}), env)

    @staticmethod
    def _address(env: ServiceEnv) -> str | None:
        if env.spec is None or env.head is None:
            return None
        return str(compute_facing_address(env.spec))

    async def start(self) -> None:
        if self.address is None or self.env.spec is None:
            raise self.fail(f"{self.env.node} is not a head of the spec; the time server runs on a head")
        if shutil.which("chronyd") is None:
            raise self.fail("chronyd is not installed on this head; install Debian's chrony package")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        subnet = str(self.env.spec.networks.private.subnet)
        atomic_write(self.conf, render_chrony_conf(self.address, subnet, self.run_dir).encode())
        (self.run_dir / "chronyd.pid").unlink(missing_ok=True)  # a crashed chronyd's pid file blocks a new one
        await super().start()

    async def check(self) -> str | None:
        problem = await super().check()
        if problem is not None or self.address is None:
            return problem
        return await asyncio.to_thread(_query, self.address, min(2.0, self.spec.timeout))
