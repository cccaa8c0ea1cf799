"""Secret files that Complete Installation writes are 0600 root (issue 10, finding 6: ``cluster.yaml`` with fence
passwords written 0644).

The attacker is a local unprivileged user on a head: the spec on disk carries ``ha.fencing.options`` (an IPMI
password) and must not be readable by them, whatever root's umask, and an older world-readable copy is replaced by
a 0600 one. The key file keeps its 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from haoscar.commands.install_complete import SPEC_PATH, LocalTransport, plan_files
from haoscar.commands.key_plan import plan_keys
from haoscar.lab.defaults import default_spec


def test_the_spec_and_the_key_are_written_0600_root_whatever_the_umask(tmp_path: Path) -> None:
    spec = default_spec()
    spec_text = b"ha:\n  fencing: {method: fence-agents, agent: fence_ipmilan, options: {password: s3cret}}\n"
    writes = plan_files(spec, spec_text, systemd=False)
    modes = {w.path: w.mode for w in writes}
    assert modes[SPEC_PATH] == 0o600
    keys = plan_keys(spec, lambda path: None, [("head1", "primary"), ("witness", "witness")])
    assert keys.files and all(k.mode == 0o600 for k in keys.files)

    transport = LocalTransport("head1")
    target = tmp_path / "etc" / "haoscar" / "cluster.yaml"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old spec\n")
    target.chmod(0o644)  # what an earlier version left behind
    old = os.umask(0)
    try:
        transport.write(str(target), spec_text, modes[SPEC_PATH])
    finally:
        os.umask(old)
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == 0
    assert target.read_bytes() == spec_text
    assert sorted(p.name for p in target.parent.iterdir()) == ["cluster.yaml"]  # no temporary file left
