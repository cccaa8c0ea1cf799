"""Simulated BMCs: OpenIPMI's ``ipmi_sim`` as the baseboard management controller of a lab head.

A spec's ``lab.bmcs: {head1: 198.18.0.241}`` gives the lab a host ``head1-bmc`` (role ``bmc``) with that address
on the network that holds it (the private one, the management network of a small cluster): a separate device with
its own address, reachable from the other head, as a real BMC is. Its ``ipmi_sim`` answers IPMI 1.5/2.0 on UDP
623 of that address, with one administrator (``admin``) whose password the lab makes and keeps in
``LAB_DIR/bmc/HEAD-bmc/password`` (mode 0600).

Its chassis power command is ``python -m haoscar.lab.bmc_power``: ``chassis power off`` crashes the head's lab host
(every process SIGKILLed, links down, as ``haoscar lab crash``), ``on`` restores it, ``status`` reads it. To do
that it must reach the host it powers, as a BMC is wired to its board: ``ipmi_sim`` runs in the BMC host's
**network** namespace (so it listens only on the lab network) but in the machine's PID and mount namespaces (where
the lab's processes and ``/run/netns`` are). Crashing the BMC host kills it like any process of that network
namespace; restoring the BMC host starts it again.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from haoscar.errors import UserError
from haoscar.lab.layout import LabHost
from haoscar.lab.names import NETNS_DIR
from haoscar.lab.nsenter import CLONE_NEWNET, register_spawned, setns

IPMI_SIM = "ipmi_sim"
USERNAME = "admin"
IPMI_PORT = 623
READY_TIMEOUT = 10.0
# The BMC itself: MC 0x20 with chassis support (device support 0x9f), no sensors.
EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
"""


def bmc_dir(lab_dir: Path, bmc_host: str) -> Path:
    return lab_dir / "bmc" / bmc_host


def password_file(lab_dir: Path, bmc_host: str) -> Path:
    """The BMC's administrator password (0600): what a head's ``password_file`` must hold to fence through it."""
    return bmc_dir(lab_dir, bmc_host) / "password"


def power_command(state_dir: Path, lab: str, bmc_host: str) -> str:
    argv = [sys.executable, "-m", "haoscar.lab.bmc_power", str(state_dir), lab, bmc_host]
    return " ".join(shlex.quote(arg) for arg in argv)


def render_lan_conf(name: str, address: str, password: str, command: str) -> str:
    """ipmi_sim's lan.conf (ipmi_lan(5)): one LAN channel on the BMC's address, one admin user, chassis control
    through ``command`` (called as ``COMMAND get power`` -> ``power:0|1``, ``COMMAND set power 0|1``)."""
    if '"' in command or '"' in password:
        raise UserError(f"the BMC command and password cannot hold a double quote: {command!r}")
    return f"""name "{name}"
set_working_mc 0x20
  startlan 1
    addr {address} {IPMI_PORT}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{command}"
  user 2 true "{USERNAME}" "{password}" admin 10 md5
"""


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    os.chmod(path, 0o600)  # before the bytes: never readable by others
    path.write_text(text)


def write_config(lab_dir: Path, state_dir: Path, lab: str, host: LabHost) -> Path:
    """The BMC's directory: password (made once, kept across restarts), lan.conf, the emulator commands."""
    base = bmc_dir(lab_dir, host.name)
    (base / "state").mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    secret = password_file(lab_dir, host.name)
    if not secret.exists():
        _private(secret, secrets.token_urlsafe(12) + "\n")
    address = host.interfaces[0].ip
    assert address is not None
    text = render_lan_conf(host.name, address, secret.read_text().strip(), power_command(state_dir, lab, host.name))
    _private(base / "lan.conf", text)
    (base / "bmc.emu").write_text(EMU)
    return base


def _listening(pid: int, port: int) -> bool:
    """Whether process ``pid``'s network namespace has a UDP socket bound to ``port`` (read from /proc)."""
    try:
        lines = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines)


def start(lab_dir: Path, state_dir: Path, lab: str, host: LabHost) -> subprocess.Popen[bytes]:
    """Start ``host``'s ipmi_sim in its network namespace; return once it listens on the IPMI port."""
    program = shutil.which(IPMI_SIM)
    if program is None:
        raise UserError("lab.bmcs needs OpenIPMI's ipmi_sim: install the openipmi package (`make deps`)")
    base = write_config(lab_dir, state_dir, lab, host)
    netns = os.open(f"{NETNS_DIR}/{host.netns}", os.O_RDONLY | os.O_CLOEXEC)
    argv = [program, "-c", str(base / "lan.conf"), "-f", str(base / "bmc.emu"), "-s", str(base / "state"), "-n"]
    try:
        with open(base / "ipmi_sim.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=lambda: setns(netns, CLONE_NEWNET),  # noqa: PLW1509 - only the network namespace
                start_new_session=True,  # a Ctrl-C in the terminal that ran `lab up` must not stop the BMC
                cwd=base,
            )
    finally:
        os.close(netns)
    register_spawned(proc)
    deadline = time.monotonic() + READY_TIMEOUT
    while not _listening(proc.pid, IPMI_PORT):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (base / "ipmi_sim.log").read_text(errors="replace")[-400:]
            raise RuntimeError(f"the BMC {host.name} (ipmi_sim) did not start: {tail or 'no output'}")
        time.sleep(0.01)
    return proc


def start_bmcs(lab_dir: Path, state_dir: Path, lab: str, hosts: Iterable[LabHost]) -> None:
    """Start the ipmi_sim of every BMC among ``hosts`` (hosts just booted by ``up`` or ``restore``)."""
    for host in hosts:
        if host.role == "bmc":
            start(lab_dir, state_dir, lab, host)
