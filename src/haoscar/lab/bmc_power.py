"""The power wiring of a lab BMC: ipmi_sim's ``chassis_control`` program (lab/bmc.py).

``python -m haoscar.lab.bmc_power STATE_DIR LAB BMC_HOST get power`` prints ``power:1`` (the host it powers is
up, or frozen: a paused machine still draws power) or ``power:0`` (crashed); ``... set power 0`` crashes that host
(every process SIGKILLed, links down: ``haoscar lab crash``), ``set power 1`` restores a crashed one, ``set reset 1``
does both. ipmi_sim appends the verb and the names (``get power``, ``set power "0"``) and reads ``NAME:VALUE`` lines.
Every call is logged to ``LAB_DIR/bmc/BMC_HOST/power.log``. ``get`` reads the lab's JSON directly: it runs on every
status query of a fence agent, so it stays light.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _lab_dir(state_dir: str, lab: str) -> Path:
    return Path(state_dir) / "labs" / lab


def _hosts(state_dir: str, lab: str) -> dict[str, dict[str, object]]:
    layout = json.loads((_lab_dir(state_dir, lab) / "lab.json").read_text())
    hosts: dict[str, dict[str, object]] = layout["hosts"]
    return hosts


def _set_power(state_dir: str, lab: str, host: str, name: str, value: str) -> None:
    from haoscar.lab.lab import Lab  # only for changes: the import costs a few hundred ms

    machine = Lab.open(lab, state_dir)
    if name == "power" and value == "0":
        machine.crash(host)
    elif name == "power":
        if machine.host(host).state == "crashed":
            machine.restore(host)
    elif name == "reset":
        machine.crash(host)
        machine.restore(host)
    else:
        raise ValueError(f"the lab BMC cannot set {name!r} (only power and reset)")


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] not in ("get", "set"):
        print("usage: python -m haoscar.lab.bmc_power STATE_DIR LAB BMC_HOST get|set NAME [VALUE]", file=sys.stderr)
        return 2
    state_dir, lab, bmc_host, verb, rest = argv[0], argv[1], argv[2], argv[3], argv[4:]
    with open(_lab_dir(state_dir, lab) / "bmc" / bmc_host / "power.log", "a") as log:
        log.write(f"{time.time():.3f} {verb} {' '.join(rest)}\n")
    hosts = _hosts(state_dir, lab)
    host = str(hosts[bmc_host]["powers"])
    if verb == "get":
        for name in rest:
            if name == "power":
                print(f"power:{0 if hosts[host]['state'] == 'crashed' else 1}")
        return 0
    try:
        _set_power(state_dir, lab, host, rest[0], rest[1] if len(rest) > 1 else "1")
    except Exception as exc:  # ipmi_sim turns a failure into an IPMI error for the client
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
