"""A private sshd inside a lab host, for tests that need a golden client or any ssh target.

    with lab_sshd(lab, "node01", [identity.public_key]) as address:
        ...  # ssh root@address works from the other lab hosts on that network

The config, host key and authorized keys live in the host's private /etc/haoscar/sshd; the privilege separation
directory in its private /run. The sshd is ended by its pid when the block exits (and dies with the lab anyway).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from haoscar.lab.lab import Lab
from haoscar.provision.sshkeys import prepare_sshd


@contextmanager
def lab_sshd(lab: Lab, host: str, authorized: list[str], network: str = "private") -> Iterator[str]:
    address = lab.host(host).address_on(network)
    assert address is not None, f"{host} has no address on {network}"
    host_dir = lab.host_dir(host)
    setup = prepare_sshd(host_dir / "etc/haoscar/sshd", address, authorized, seen_as=Path("/etc/haoscar/sshd"))
    # sshd insists on its privilege separation directory, owned by root and not group/world writable.
    os.makedirs(host_dir / "run/sshd", mode=0o755, exist_ok=True)
    proc = lab.popen(host, setup.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _await_listen(lab, host, address, proc)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _await_listen(lab: Lab, host: str, address: str, proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            raise RuntimeError(f"sshd in {host} exited with {proc.returncode}: {err}")
        listening = lab.exec(host, ["ss", "-Hltn", f"src {address}:22"], check=False).stdout
        if listening.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd in {host} did not listen on {address}:22 within {timeout} s")
