"""`cluster test`'s MPI check runs mpirun a second time when mpirun itself failed, and says so."""

from __future__ import annotations

import subprocess
from typing import Any

from haoscar.commands.cluster_test_mpi import MpiCheck

ORTE = b"ORTE does not know how to route a message to the specified daemon\n"


class Jobs:
    """The check's run: answers each `job` call with the next prepared result."""

    def __init__(self, *results: subprocess.CompletedProcess[bytes] | str) -> None:
        self.results = list(results)
        self.calls = 0

    def job(self, argv: list[str], what: str, package: str) -> subprocess.CompletedProcess[bytes] | str:
        self.calls += 1
        return self.results.pop(0)


def _done(rc: int, err: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.CompletedProcess(["mpirun"], rc, b"", err)


def _check(run: Any) -> MpiCheck:
    return MpiCheck(run, ["node01", "node02"])


def test_a_failed_mpirun_is_run_once_more_and_the_first_failure_is_kept() -> None:
    run = Jobs(_done(255, ORTE), _done(0))
    done, first = _check(run)._mpirun(["mpirun"])
    assert run.calls == 2
    assert isinstance(done, subprocess.CompletedProcess) and done.returncode == 0
    assert first is not None and first[0] == 255 and "ORTE does not know how to route" in first[1]


def test_a_passing_mpirun_is_run_once() -> None:
    run = Jobs(_done(0))
    done, first = _check(run)._mpirun(["mpirun"])
    assert run.calls == 1 and first is None and isinstance(done, subprocess.CompletedProcess)


def test_mpirun_that_could_not_start_is_not_retried() -> None:
    run = Jobs("mpirun is not installed (openmpi-bin)")
    done, first = _check(run)._mpirun(["mpirun"])
    assert run.calls == 1 and done == "mpirun is not installed (openmpi-bin)" and first is None


def test_a_second_failure_is_the_result() -> None:
    run = Jobs(_done(255, ORTE), _done(1, b"second\n"))
    done, first = _check(run)._mpirun(["mpirun"])
    assert run.calls == 2 and isinstance(done, subprocess.CompletedProcess) and done.returncode == 1
    assert first is not None and first[0] == 255
