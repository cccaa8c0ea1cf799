"""Real IPMI fencing in a lab: each head gets a simulated BMC (``lab.bmcs``, OpenIPMI's ipmi_sim, lab/bmc.py) and
the daemons fence through it with Debian's ``fence_ipmilan``.

``with_bmcs(spec)`` adds a BMC per head on the private network; after ``Lab.up``, ``ipmi_fencing(lab, spec)``
copies every BMC's password to both heads (``/etc/haoscar/fence/HEAD.password``, mode 0600) and returns the
``ha.fencing`` that uses them: the password is never in the spec, only the file's name is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from haoscar.lab import bmc
from haoscar.lab.lab import Lab
from haoscar.spec.models import ClusterSpec, Fencing
from haoscar.spec.models import Lab as LabSpec

BMC_ADDRESSES = {"primary": "198.18.0.241", "standby": "198.18.0.242"}
PASSWORD_DIR = "/etc/haoscar/fence"  # inside each head (its private /etc/haoscar)
# ipmi_sim does not answer ipmitool's "Get Channel Cipher Suites"; ipmitool then waits ~10 s before it falls back
# to suite 3 (HMAC-SHA1 + AES-128), so name the suite.
IPMI_OPTIONS = {"username": bmc.USERNAME, "lanplus": "1", "cipher": "3"}


def with_bmcs(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with a lab BMC for each head (198.18.0.241 for the primary, .242 for the standby)."""
    heads = {"primary": spec.heads.primary.hostname, "standby": spec.heads.standby.hostname}
    bmcs = {heads[role]: address for role, address in BMC_ADDRESSES.items()}
    lab = LabSpec.model_validate({**spec.lab.model_dump(), "bmcs": bmcs})
    return spec.model_copy(update={"lab": lab})


def bmc_of(lab: Lab, head: str) -> str:
    """The lab host that is ``head``'s BMC."""
    return next(h.name for h in lab.hosts.values() if h.role == "bmc" and h.powers == head)


def install_passwords(lab: Lab, heads: Sequence[str]) -> None:
    """Every BMC's password into every head's /etc/haoscar/fence/ (0700 dir, 0600 files): each fences the other."""
    for head in heads:
        target = lab.host_dir(head) / PASSWORD_DIR.lstrip("/")
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(target, 0o700)
        for powered in heads:
            secret = bmc.password_file(lab.dir, bmc_of(lab, powered)).read_bytes()
            path = target / f"{powered}.password"
            path.touch(mode=0o600)
            os.chmod(path, 0o600)  # before the bytes
            path.write_bytes(secret)


def ipmi_fencing(lab: Lab, spec: ClusterSpec, timeout: float = 10.0) -> Fencing:
    """``ha.fencing`` through the heads' lab BMCs with the real fence_ipmilan (passwords installed on the heads)."""
    heads = [spec.heads.primary.hostname, spec.heads.standby.hostname]
    install_passwords(lab, heads)
    targets = {head: {"ip": str(spec.lab.bmcs[head])} for head in heads}
    options = IPMI_OPTIONS | {"password_file": f"{PASSWORD_DIR}/{{peer}}.password"}
    return Fencing(method="fence-agents", agent="fence_ipmilan", options=options, targets=targets, timeout=timeout)
