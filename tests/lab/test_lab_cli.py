"""`haoscar lab ...` as a user runs it: a whole life cycle, and the mistakes that exit with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.lab import Lab
from haoscar.scenarios.lab_fixtures import unique_lab_name

pytestmark = pytest.mark.lab

SPEC = Path(__file__).resolve().parents[2] / "src/haoscar/data/lab.yaml"


def haoscar(state_dir: Path, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "haoscar", "--state-dir", str(state_dir), *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def cli(capfd: pytest.CaptureFixture[str], state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (start-up is the slow part of a CLI call); output captured at the fd level."""
    capfd.readouterr()
    try:
        run(["--state-dir", str(state_dir), *args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_cli_life_cycle(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    name = unique_lab_name("c")
    try:
        up = cli(capfd, tmp_path, "lab", "up", "--spec", str(SPEC), "--name", name, "--json")
        assert up.returncode == 0, up.stderr
        assert [h["name"] for h in json.loads(up.stdout)["hosts"]] == [
            "head1", "head2", "node01", "node02", "witness", "client",
        ]  # fmt: skip
        script = "ping -c1 -w3 198.19.0.11; exit 7"
        ping = cli(capfd, tmp_path, "lab", "exec", "--name", name, "client", "--", "sh", "-c", script)
        assert ping.returncode == 7 and "1 received" in ping.stdout, ping.stdout + ping.stderr
        assert cli(capfd, tmp_path, "lab", "crash", "-n", name, "node02").returncode == 0
        table = cli(capfd, tmp_path, "lab", "status", "-n", name)
        assert "crashed" in table.stdout and "br-heartbeat" in table.stdout
    finally:
        down = cli(capfd, tmp_path, "lab", "down", "--name", name)
    assert down.returncode == 0 and "is down" in down.stdout
    again = cli(capfd, tmp_path, "lab", "down", "--name", name)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    gone = cli(capfd, tmp_path, "lab", "status", "--name", name)
    assert gone.returncode == 2 and f"no lab '{name}'" in gone.stderr and "Traceback" not in gone.stderr


def test_cli_mistakes_exit_2_with_a_clear_message(lab: Lab, capfd: pytest.CaptureFixture[str]) -> None:
    state = lab.state_dir
    with ThreadPoolExecutor(2) as pool:  # a non-root user needs a process of its own: start those first
        up_as_nobody = pool.submit(haoscar, state, "lab", "up", "--spec", str(SPEC), "--name", "x", user=65534)
        crash_as_nobody = pool.submit(haoscar, state, "lab", "crash", "--name", lab.name, "head1", user=65534)
        results = {
            "unknown host": cli(capfd, state, "lab", "exec", "--name", lab.name, "head3", "--", "true"),
            "unknown iface": cli(capfd, state, "lab", "link", "--name", lab.name, "head1", "eth7", "down"),
            "bad name": cli(capfd, state, "lab", "up", "--spec", str(SPEC), "--name", "Bad_Name"),
            "up as nobody": up_as_nobody.result(),
            "crash as nobody": crash_as_nobody.result(),
        }
    for what, result in results.items():
        assert result.returncode == 2, (what, result.stderr)
        assert "Traceback" not in result.stderr
    assert "no host 'head3'" in results["unknown host"].stderr
    assert "head1, head2, node01" in results["unknown host"].stderr
    assert "eth0, eth1, eth2" in results["unknown iface"].stderr
    assert "not a valid lab name" in results["bad name"].stderr
    assert "needs root" in results["up as nobody"].stderr and "needs root" in results["crash as nobody"].stderr
    assert lab.alive("head1")  # nothing was changed by the refused commands
