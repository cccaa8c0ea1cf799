"""The state directory's ssh key pair is made once, whoever asks first: callers at the same moment (two nodes'
install plans in the boot server) all get the same complete pair (it was a failed plan: "ssh-keygen could not
create ...", the node told "the boot server does not know MAC")."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from haoscar.provision.sshkeys import SshIdentity, ensure_identity


def test_callers_at_the_same_moment_all_get_the_one_pair(tmp_path: Path) -> None:
    got: list[SshIdentity | BaseException] = []

    def ask() -> None:
        try:
            got.append(ensure_identity(tmp_path))
        except BaseException as exc:  # collected: the assertion below names it
            got.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [g for g in got if isinstance(g, BaseException)] == []
    key = tmp_path / "ssh/id_ed25519"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == Path(f"{key}.pub").read_text().split()[:2]
    assert (key.stat().st_mode & 0o777, (tmp_path / "ssh").stat().st_mode & 0o777) == (0o600, 0o700)
