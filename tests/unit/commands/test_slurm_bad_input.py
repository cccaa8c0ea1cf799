"""Issue 11's bad input, end to end through the CLI: a private alias that collides with a node, a Slurm node the
database does not have, a missing munge key. Each is one clear message naming what to fix, exit status 2, no
traceback, and nothing changed: the database (its SQL dump), slurm.conf and the key here, every host's files."""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import yaml

from haoscar.cli.main import run
from haoscar.commands import slurm
from haoscar.commands.apply import ApplySpec, spec_apply
from haoscar.commands.env import Env


class Door:
    """A host as ``slurm sync`` sees it: files by path, and the commands it was asked to run."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.commands: list[str] = []

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.files[path] = data

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        self.commands.append(command)
        if command.startswith("sha256sum "):
            path = command.split()[1]
            found = self.files.get(path)
            return (0, f"{hashlib.sha256(found).hexdigest()}  {path}") if found is not None else (1, "")
        return 0, ""


def lab_yaml(alias: str) -> str:
    raw = yaml.safe_load(resources.files("haoscar.data").joinpath("lab.yaml").read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = alias
    return yaml.safe_dump(raw)


def haoscar(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run(list(argv))
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def dump(state: Path) -> list[str]:
    with sqlite3.connect(state / "haoscar.db") as connection:
        return list(connection.iterdump())


@pytest.fixture
def applied(tmp_path: Path) -> tuple[Path, Path]:
    """A state directory holding the lab spec with a good private alias, and that spec's file."""
    spec = tmp_path / "cluster.yaml"
    spec.write_text(lab_yaml("198.18.0.3"))
    state = tmp_path / "state"
    with Env(state) as env:
        spec_apply(env, ApplySpec(file=spec))
    return state, spec


@pytest.mark.parametrize("command", ["validate", "apply"])
def test_a_private_alias_that_is_a_nodes_address(
    command: str, applied: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, _good = applied
    bad = tmp_path / "bad.yaml"
    bad.write_text(lab_yaml("198.18.0.101"))  # node01's private address
    before = dump(state)
    code, err = haoscar(capsys, "--state-dir", str(state), "spec", command, str(bad))
    assert code == 2, err
    assert "heads.primary.private_alias_ip: 198.18.0.101 is also the address of" in " ".join(err.split())
    assert "(node01)" in err and "Traceback" not in err
    assert dump(state) == before


def test_a_hardware_report_of_a_node_the_database_does_not_have(
    applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state, _spec = applied
    before = dump(state)
    code, err = haoscar(
        capsys, "--state-dir", str(state), "slurm", "report", "node99", "--cpus", "4", "--memory-mb", "9"
    )
    assert code == 2, err
    assert "node99" in err and "no compute node of the database" in err and "Traceback" not in err
    assert dump(state) == before


@pytest.fixture
def synced(
    applied: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, Path, dict[str, Door]]:
    """The CLI's ``slurm sync`` with this head's files under ``here`` and the other hosts as doors; a first sync
    with ``--push-key`` has run, so every host has slurm.conf and the cluster's key."""
    state, spec = applied
    here = tmp_path / "head1"
    conf_path, key_path = str(here / "slurm.conf"), str(here / "munge.key")
    # The CLI builds its request with the real paths; here they point under ``here`` (this head's files).
    monkeypatch.setattr(
        slurm, "SyncSlurm", functools.partial(slurm.SyncSlurm, conf_path=conf_path, munge_key_path=key_path)
    )
    hosts = {name: Door({}) for name in ("head2", "node01", "node02")}
    monkeypatch.setattr(slurm, "default_doors", lambda env, spec, local, nodes: {"head1": Door({}), **hosts})
    argv = ["--state-dir", str(state), "slurm", "sync", "--spec", str(spec), "--push-key", "--no-hardware"]
    try:
        run(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    assert all(door.files.keys() == {conf_path, key_path} for door in hosts.values())
    capsys.readouterr()
    return state, spec, here, hosts


def test_sync_with_a_node_missing_the_munge_key(
    synced: tuple[Path, Path, Path, dict[str, Door]], capsys: pytest.CaptureFixture[str]
) -> None:
    state, spec, here, hosts = synced
    key_path = str(here / "munge.key")
    del hosts["node02"].files[key_path]  # node02 reinstalled from a clean image
    files = {name: dict(door.files) for name, door in hosts.items()}
    conf, key, before = (here / "slurm.conf").read_bytes(), (here / "munge.key").read_bytes(), dump(state)
    code, err = haoscar(capsys, "--state-dir", str(state), "slurm", "sync", "--spec", str(spec))
    assert code == 2, err
    flat = " ".join(err.split())
    assert "--push-key" in flat and "munge key is missing or different on node02" in flat and "Traceback" not in err
    assert {name: door.files for name, door in hosts.items()} == files  # nothing written to any host
    assert (here / "slurm.conf").read_bytes() == conf and (here / "munge.key").read_bytes() == key
    assert dump(state) == before


def test_sync_on_a_head_without_the_munge_key(
    synced: tuple[Path, Path, Path, dict[str, Door]], capsys: pytest.CaptureFixture[str]
) -> None:
    state, spec, here, hosts = synced
    (here / "munge.key").unlink()
    (here / "slurm.conf").unlink()
    files = {name: dict(door.files) for name, door in hosts.items()}
    before = dump(state)
    code, err = haoscar(capsys, "--state-dir", str(state), "slurm", "sync", "--spec", str(spec))
    assert code == 2, err
    assert "--push-key" in err and "no munge key" in err and "Traceback" not in err
    assert not (here / "munge.key").exists() and not (here / "slurm.conf").exists()  # no key made, no config
    assert {name: door.files for name, door in hosts.items()} == files and dump(state) == before
