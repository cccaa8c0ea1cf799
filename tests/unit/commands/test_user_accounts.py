"""``haoscar user add|delete|list`` and ``cluster sync`` without hosts: ids chosen and checked, bad input refused
with the field named and nothing changed, the home made on the export, the push to every host reported (ClusterShell's
runs replaced by fakes: no ssh, no account tool runs on this machine)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from haoscar.commands.apply import apply_spec
from haoscar.commands.cluster_sync import SyncRequest, cluster_sync
from haoscar.commands.env import Env
from haoscar.commands.exec import Copier, Shell
from haoscar.commands.users import ListUsers, UserAdd, UserDelete, UserReport, user_add, user_delete, user_list
from haoscar.errors import FieldError
from haoscar.provision import fanout
from haoscar.scenarios.bench.exec_lab import exec_lab_spec

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\nlocal:x:1000:1000::/home/local:/bin/bash\nbob:x:2005:2005::/home/bob:/bin/sh\n"
)
GROUP = "root:x:0:\nusers:x:100:\nlocal:x:1000:\nbob:x:2005:\nstaff2:x:3000:\n"
Cli = Callable[..., tuple[int, str, str]]  # the fixtures of tests/unit/conftest.py
Dump = Callable[[str], list[str]]
HOSTS = ["head1", "head2", "node001", "node002", "node003"]


class Hosts:
    """The fan-out's stand-in: records what each host was sent; ``down`` hosts are unreachable."""

    def __init__(self, down: Sequence[str] = ()) -> None:
        self.down = set(down)
        self.copied: list[str] = []
        self.commands: list[tuple[list[str], str]] = []
        self.scripts: list[str] = []

    def _outcome(self, node: str) -> fanout.Outcome:
        if node in self.down:
            return fanout.Outcome([], [f"ssh: connect to host {node} port 22: No route to host"], 255)
        return fanout.Outcome(["added user alice (2000)"], [], 0)

    def copier(
        self, nodes: list[str], source: Path, dest: str, limits: fanout.Limits, config: Path, *, preserve: bool = False
    ) -> dict[str, fanout.Outcome]:
        self.copied += nodes
        self.scripts.append(source.read_text())
        return {n: self._outcome(n) for n in nodes}

    def shell(self, nodes: list[str], command: str, limits: fanout.Limits, config: Path) -> dict[str, fanout.Outcome]:
        self.commands.append((nodes, command))
        return {n: self._outcome(n) for n in nodes}

    @property
    def runners(self) -> tuple[Shell, Copier]:
        return (self.shell, self.copier)


def fake_run(
    argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[bytes]:
    """getent answers from the tables above; ssh-keygen is the real one (it only writes under tmp); nothing else."""
    if list(argv[:2]) == ["getent", "passwd"]:
        return subprocess.CompletedProcess(list(argv), 0, PASSWD.encode(), b"")
    if list(argv[:2]) == ["getent", "group"]:
        return subprocess.CompletedProcess(list(argv), 0, GROUP.encode(), b"")
    if argv[0] == "ssh-keygen":
        return subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=False)
    raise AssertionError(f"unexpected program: {argv}")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    made = Env(state_dir=tmp_path / "state", run=fake_run)
    apply_spec(made.database, exec_lab_spec(3))
    return made


def add(env: Env, tmp_path: Path, name: str = "alice", hosts: Hosts | None = None, **fields: Any) -> UserReport:
    return user_add(env, UserAdd(name, home_base=tmp_path / "home", **fields), (hosts or Hosts()).runners)


def test_first_user_gets_2000_and_its_own_group_and_a_home_with_its_key(env: Env, tmp_path: Path) -> None:
    hosts = Hosts()
    report = add(env, tmp_path, hosts=hosts, comment="Alice")
    user = report.user
    # bob (2005) is an account of this head: the next id is above it, as useradd picks.
    assert (user.uid, user.gid, user.group, user.home) == (2006, 2006, "alice", str(tmp_path / "home/alice"))
    assert report.exit_status == 0
    home = tmp_path / "home/alice"
    assert (home.stat().st_uid, home.stat().st_gid, home.stat().st_mode & 0o777) == (2006, 2006, 0o700)
    key = home / ".ssh/id_ed25519"
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (2006, 0o600)
    assert (home / ".ssh/authorized_keys").read_text() == Path(f"{key}.pub").read_text()
    assert (home / ".profile").is_file()  # from /etc/skel
    assert sorted(hosts.copied) == HOSTS  # "vm" is no head here: every host gets the script over ssh
    script = hosts.scripts[0]
    assert f"ensure_group alice 2006\nensure_user alice 2006 2006 {tmp_path}/home/alice /bin/bash Alice" in script
    assert [row.name for row in user_list(env, ListUsers())] == ["alice"]


def test_a_down_host_is_reported_and_the_others_get_the_user(env: Env, tmp_path: Path) -> None:
    hosts = Hosts(down=["node003"])
    report = add(env, tmp_path, hosts=hosts)
    sync = report.sync
    assert (report.exit_status, sync.failed) == (1, ["node003"])
    by_host = {h.host: h for h in sync.hosts}
    assert by_host["node003"].error == "unreachable: connect to host node003 port 22: No route to host"
    assert by_host["node001"].changes == ["added user alice (2000)"]
    # The script ran only where it was copied to.
    assert sorted(hosts.commands[0][0]) == [h for h in HOSTS if h != "node003"]
    again = cluster_sync(env, SyncRequest(), Hosts().runners)
    assert again.exit_status == 0


def test_ids_given_and_shared_groups(env: Env, tmp_path: Path) -> None:
    assert add(env, tmp_path, "carol", uid=4000, gid=4100).user.gid == 4100
    dave = add(env, tmp_path, "dave", group="carol").user
    assert (dave.uid, dave.gid, dave.group) == (4001, 4100, "carol")
    # A group of this head (not haoscar's) is used with its gid and only checked on the hosts.
    hosts = Hosts()
    erin = add(env, tmp_path, "erin", group="users", hosts=hosts).user
    assert (erin.gid, erin.group) == (100, "users")
    assert "check_group users 100" in hosts.scripts[0]
    # Deleting carol keeps her group while dave has it.
    user_delete(env, UserDelete("carol"), Hosts().runners)
    assert not (tmp_path / "home/carol").exists()
    assert "ensure_group carol 4100" in cluster_sync_script(env)


def cluster_sync_script(env: Env) -> str:
    hosts = Hosts()
    cluster_sync(env, SyncRequest(), hosts.runners)
    return hosts.scripts[0]


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"name": "Alice"}, "name", "'Alice' is not a valid name"),
        ({"name": "9lives"}, "name", "is not a valid name"),
        ({"name": "bob"}, "name", "'bob' is an account on this head already"),
        ({"name": "zed", "uid": 2005}, "uid", "2005 is taken by 'bob'"),
        ({"name": "zed", "uid": 500}, "uid", "500 is outside 1000-59999"),
        ({"name": "zed", "uid": 60001}, "uid", "60001 is outside 1000-59999"),
        ({"name": "zed", "gid": 3000}, "gid", "3000 is taken by group 'staff2'"),
        ({"name": "zed", "group": "users", "gid": 4444}, "gid", "4444: group 'users' has gid 100"),
        ({"name": "zed", "shell": "bash"}, "shell", "'bash' is not an absolute path"),
        ({"name": "zed", "shell": "/no/such/shell"}, "shell", "is no executable on this head"),
        ({"name": "zed", "comment": "a:b"}, "comment", "may not contain ':'"),
        ({"name": "zed", "group": "Bad Group"}, "group", "is not a valid name"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(
    env: Env, tmp_path: Path, fields: dict[str, Any], field: str, text: str
) -> None:
    hosts = Hosts()
    with pytest.raises(FieldError) as caught:
        add(env, tmp_path, hosts=hosts, **fields)
    assert caught.value.field == field
    assert text in str(caught.value)
    assert user_list(env, ListUsers()) == []
    assert not (tmp_path / "home").exists()
    assert hosts.copied == [] and hosts.commands == []


def test_a_cluster_user_that_exists_and_a_uid_of_another_cluster_user(env: Env, tmp_path: Path) -> None:
    add(env, tmp_path, "alice", uid=2500)
    before = sorted(p.name for p in (tmp_path / "home").iterdir())
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": "alice"}, "name", "'alice' is a user of the cluster already"),
        ({"name": "zed", "uid": 2500}, "uid", "2500 is taken by 'alice'"),
        ({"name": "zed", "gid": 2500}, "gid", "2500 is taken by group 'alice'"),
    ]
    for fields, field, text in cases:
        with pytest.raises(FieldError) as caught:
            add(env, tmp_path, **fields)
        assert (caught.value.field, text in str(caught.value)) == (field, True), str(caught.value)
    assert [u.name for u in user_list(env, ListUsers())] == ["alice"]
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == before


def test_a_key_file_that_holds_no_key(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "key.pub"
    bad.write_text("not a key\n")
    with pytest.raises(FieldError) as caught:
        add(env, tmp_path, ssh_key=bad)
    assert caught.value.field == "ssh_key" and "key 1 is not an ssh public key" in str(caught.value)
    good = tmp_path / "good"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", str(good)], check=True)
    add(env, tmp_path, ssh_key=Path(f"{good}.pub"))
    assert "laptop" in (tmp_path / "home/alice/.ssh/authorized_keys").read_text()


def test_bad_input_through_the_cli_is_exit_2_and_changes_nothing(
    haoscar: Cli, state: str, dump: Dump, tmp_path: Path
) -> None:
    before = dump(state)
    for argv, expected in [
        (["user", "delete", "nobody"], "error: NAME: 'nobody' is no user of the cluster; the users are none yet"),
        (["user", "add", "Bad!"], "error: NAME: 'Bad!' is not a valid name"),
        (["user", "add", "zed", "--uid", "12"], "error: --uid: 12 is outside 1000-59999"),
        (["user", "add", "zed", "--ssh-key", str(tmp_path / "missing.pub")], "error: --ssh-key: "),
        (["user", "add", "zed", "--shell", "sh", "--comment", "a:b"], "error: 2 problems; nothing was changed"),
        (["cluster", "sync", "@nope"], "error: NODESET: unknown group @nope"),
    ]:
        code, out, err = haoscar("--state-dir", state, *argv)
        assert (code, err.startswith(expected)) == (2, True), err
        assert "Traceback" not in err
    assert dump(state) == before
    code, out, _ = haoscar("--state-dir", state, "user", "list", "--json")
    assert (code, out.strip()) == (0, "[]")


def test_the_sync_after_a_node_change_goes_to_the_heads_and_the_installed_nodes_only(env: Env) -> None:
    from sqlalchemy import update

    from haoscar.commands.cluster_sync import resync_after_node_change
    from haoscar.db.models import Node

    hosts = Hosts()
    assert resync_after_node_change(env, hosts.runners) is None
    assert hosts.copied == []  # a cluster being defined: no host to keep current
    with env.database.session() as session:
        session.execute(update(Node).where(Node.name.in_(["node001", "node003"])).values(install_state="installed"))
    report = resync_after_node_change(env, Hosts(down=["node003"]).runners)
    assert report is not None
    assert [h.host for h in report.hosts] == ["head1", "head2", "node001", "node003"]
    assert report.failed == ["node003"]


def test_two_user_adds_at_once_the_second_changes_nothing_and_says_so(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other `user add` records its user (the same uid) after this one chose its ids and before it inserts: a
    clear error naming the uid, no second user, and the home this call made is gone again."""
    import haoscar.commands.users as users_module
    from haoscar.db.models import User, UserGroup

    real_make_home = users_module.make_home

    def make_home_while_another_add_lands(*args: Any, **kwargs: Any) -> list[str]:
        with env.database.session() as session:
            session.add(UserGroup(name="racer", gid=2006))
            session.flush()
            session.add(User(name="racer", uid=2006, group="racer", shell="/bin/bash", comment="", home="/home/r"))
        return real_make_home(*args, **kwargs)

    monkeypatch.setattr(users_module, "make_home", make_home_while_another_add_lands)
    with pytest.raises(FieldError) as caught:
        add(env, tmp_path, "alice")
    assert caught.value.field == "uid"
    assert "another `user add` took name 'alice', uid 2006" in str(caught.value)
    assert [u.name for u in user_list(env, ListUsers())] == ["racer"]
    assert not (tmp_path / "home" / "alice").exists()
