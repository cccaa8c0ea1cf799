"""``haoscar spec validate`` as a user runs it: the installed console script and ``python -m haoscar``.

The commands start together (each is a fresh interpreter, ~1 s of imports) so the module stays quick; the
remaining error paths run the same entry point, ``haoscar.cli.main.run``, in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
HAOSCAR = str(Path(sys.executable).with_name("haoscar"))
TWENTY = str(HERE / "data" / "twenty_mistakes.yaml")
LAB = str(ROOT / "examples" / "lab.yaml")

COMMANDS = {
    "valid": [HAOSCAR, "spec", "validate", LAB],
    "valid-json": [HAOSCAR, "spec", "validate", LAB, "--json"],
    "twenty": [HAOSCAR, "spec", "validate", TWENTY],
    "twenty-module": [sys.executable, "-m", "haoscar", "spec", "validate", TWENTY],
    "twenty-json": [HAOSCAR, "spec", "validate", TWENTY, "--json"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    state = tmp_path_factory.mktemp("state")
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HAOSCAR_STATE_DIR": str(state), "LANG": "C.UTF-8"}
    procs = {
        name: subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for name, argv in COMMANDS.items()
    }
    done = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield done


def test_valid_spec_exits_0_with_a_summary(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run = runs["valid"]
    assert run.returncode == 0, run.stderr
    assert "is valid: cluster labcluster (lab.haoscar)" in run.stdout
    for text in ("198.18.0.0/24", "head1", "head2", "198.19.0.10", "node01 198.18.0.101", "4 nodes, 2 images"):
        assert text in run.stdout
    assert run.stderr == ""


def test_python_m_equals_the_console_script(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    script, module = runs["twenty"], runs["twenty-module"]
    assert (module.returncode, module.stdout, module.stderr) == (script.returncode, script.stdout, script.stderr)


def test_twenty_mistakes_exit_2_with_every_problem_on_stderr(
    runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = runs["twenty"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"error: {TWENTY}: 20 problems found; fix them and validate again"
    assert len(lines) == 21
    assert all(line.startswith(f"{TWENTY}:") for line in lines[1:])
    assert lines[1] == (
        f"{TWENTY}:4: cluster.name: 'Lab_Cluster' is not a valid host name; use 1-63 lower-case letters, digits "
        "and '-', not starting or ending with '-' (it would be 'lab-cluster')"
    )


def test_json_output(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    good = runs["valid-json"]
    assert good.returncode == 0
    summary = json.loads(good.stdout)
    assert summary["valid"] is True
    assert summary["nodes"] == 4
    assert summary["alias_ip"] == "198.19.0.10"
    assert summary["client_groups"][0] | {} == {
        "name": "compute",
        "image": "oscarimage",
        "count": 2,
        "nodeset": "node[01-02]",
        "first": "node01 198.18.0.101",
        "last": "node02 198.18.0.102",
    }
    bad = runs["twenty-json"]
    assert bad.returncode == 2
    report = json.loads(bad.stdout)
    assert report["valid"] is False
    assert len(report["problems"]) == 20
    assert report["problems"][0] == {
        "file": TWENTY,
        "line": 4,
        "path": "cluster.name",
        "message": report["problems"][0]["message"],
    }
    assert "it would be 'lab-cluster'" in report["problems"][0]["message"]


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from haoscar.cli.main import run

    with pytest.raises(SystemExit) as exited:
        run(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_unknown_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_in_process(["spec", "validate", str(HERE / "data" / "no-such-spec.yaml")], capsys)
    assert code == 2
    assert "no-such-spec.yaml: no such file; give the path of a cluster spec" in err
    assert "Traceback" not in err and out == ""


def test_malformed_yaml_exits_2_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster:\n  name: lab\nnetworks: [198.18.0.0/24\n")
    code, _, err = _run_in_process(["spec", "validate", str(broken)], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert f"{broken}:4: (file): YAML syntax error: " in err
