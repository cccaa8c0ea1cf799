"""Cluster accounts' pure parts: names, id ranges and the next id, the head's getent output, and the sync script's
marked blocks run for real on a directory tree (the account tools are left out of that script: nothing here
touches this machine's accounts)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path

import pytest

from haoscar.provision.accounts import id_problem, name_problem, next_id, parse_getent
from haoscar.provision.accounts_script import (
    BEGIN,
    END,
    HostEntry,
    SyncContent,
    hosts_block,
    known_hosts_block,
    render_script,
    root_keys_block,
)

ENTRIES = [
    HostEntry("198.18.0.1", "head1.cluster.local", "head1"),
    HostEntry("198.18.1.4", "node001.cluster.local", "node001"),
    HostEntry("198.18.1.5", "node002.cluster.local", "node002"),
]


@pytest.mark.parametrize("name", ["alice", "_svc", "a-b_c9", "x" * 32])
def test_valid_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "Alice", "9lives", "-x", "a b", "a:b", "x" * 33, "al.ice", "root$"])
def test_invalid_names(name: str) -> None:
    assert name_problem(name) is not None


def test_id_ranges() -> None:
    assert id_problem(1000) is None and id_problem(59999) is None
    assert "outside 1000-59999" in str(id_problem(999))
    assert "outside 1000-59999" in str(id_problem(60000))
    assert "outside" in str(id_problem(65534))


def test_next_id_follows_the_highest_then_reuses_the_lowest_free() -> None:
    assert next_id([]) == 2000
    assert next_id([0, 100, 1000, 65534]) == 2000  # ids outside the range do not count
    assert next_id([2000, 2001, 2005]) == 2006  # as useradd: above the highest, the gaps are left
    assert next_id([2000, 59999]) == 2001  # the top is taken: the lowest free one
    assert next_id(range(2000, 60000)) is None


def test_getent_output() -> None:
    text = "root:x:0:0:root:/root:/bin/bash\nalice:x:2000:2000::/home/alice:/bin/bash\nbroken line\n"
    assert parse_getent(text) == {"root": 0, "alice": 2000}


def test_hosts_block_lines() -> None:
    assert hosts_block(ENTRIES[:2]) == (
        f"{BEGIN}\n198.18.0.1\thead1.cluster.local head1\n198.18.1.4\tnode001.cluster.local node001\n{END}\n"
    )


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_by_address_or_hashed_name_get_every_name_of_their_host() -> None:
    learnt = "\n".join(
        [
            "198.18.1.4 ssh-ed25519 AAAAnode1",
            f"{_hashed('198.18.1.5')} ssh-ed25519 AAAAnode2",
            "203.0.113.9 ssh-ed25519 AAAAstranger",  # no host of the cluster: left out
            "@revoked 198.18.1.4 ssh-ed25519 AAAAold",
            "# a comment",
        ]
    )
    assert known_hosts_block(learnt, ENTRIES).splitlines() == [
        BEGIN,
        "node001,node001.cluster.local,198.18.1.4 ssh-ed25519 AAAAnode1",
        "node002,node002.cluster.local,198.18.1.5 ssh-ed25519 AAAAnode2",
        END,
    ]


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sync.sh"
    path.write_text(script)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, check=False)


def test_the_script_puts_its_blocks_first_and_keeps_the_files_other_lines(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 node001\n")
    (root / "root/.ssh").mkdir(parents=True)
    (root / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAAadmin admin@laptop\n")
    content = SyncContent(
        hosts_block(ENTRIES),
        known_hosts_block("198.18.1.4 ssh-ed25519 AAAAnode1\n", ENTRIES),
        root_keys_block(["ssh-ed25519 AAAAcluster haoscar"]),
        [],
        [],
    )
    script = render_script(content, root=str(root), with_accounts=False)
    assert "useradd" not in script
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"updated {root}/etc/hosts" in done.stdout
    hosts = (root / "etc/hosts").read_text()
    assert hosts == hosts_block(ENTRIES) + "127.0.0.1 localhost\n127.0.1.1 node001\n"
    keys = (root / "root/.ssh/authorized_keys").read_text()
    assert keys == f"{BEGIN}\nssh-ed25519 AAAAcluster haoscar\n{END}\nssh-ed25519 AAAAadmin admin@laptop\n"
    assert (root / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/ssh/ssh_known_hosts").stat().st_mode & 0o777 == 0o644

    # Run again: nothing to do. Then a node leaves: only the block changes, the other lines stay.
    done = _run(script, tmp_path)
    assert (done.returncode, done.stdout) == (0, "")
    fewer = SyncContent(hosts_block(ENTRIES[:2]), content.known_hosts, content.root_keys, [], [])
    assert _run(render_script(fewer, root=str(root), with_accounts=False), tmp_path).returncode == 0
    assert (root / "etc/hosts").read_text() == hosts_block(ENTRIES[:2]) + "127.0.0.1 localhost\n127.0.1.1 node001\n"
