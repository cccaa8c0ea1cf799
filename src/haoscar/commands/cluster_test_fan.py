"""How ``haoscar cluster test`` reaches the nodes and reads what came back: ClusterShell's shell and copy
(``provision.fanout``, as ``haoscar exec``), each node's outcome as lines or the reason there are none."""

from __future__ import annotations

from dataclasses import dataclass

from haoscar.commands.exec import Copier, Shell, ssh_failure
from haoscar.provision import fanout


@dataclass(frozen=True)
class Transport:
    """How the steps reach the nodes: ClusterShell's shell and copy (tests hand in stand-ins)."""

    shell: Shell = fanout.run_shell
    copier: Copier = fanout.run_copy


@dataclass(frozen=True)
class Answer:
    """One node's answer to one fan-out: its stdout lines, or why there is none worth reading."""

    lines: list[str]
    error: str | None


def to_answer(outcome: fanout.Outcome, timeout: float) -> Answer:
    """A node's outcome: ``timed out``, ``unreachable: SSH'S REASON``, ``exit N: ITS LAST ERROR LINE``, or fine."""
    if outcome.timed_out:
        return Answer(outcome.stdout, f"timed out after {timeout:g} s")
    if outcome.rc is None:
        return Answer(outcome.stdout, "unreachable: no exit status came back")
    failure = ssh_failure(outcome.rc, outcome.stderr)
    if failure is not None:
        return Answer(outcome.stdout, f"unreachable: {failure}")
    if outcome.rc != 0:
        said = [line.strip() for line in outcome.stderr if line.strip()]
        return Answer(outcome.stdout, f"exit {outcome.rc}" + (f": {said[-1]}" if said else ""))
    return Answer(outcome.stdout, None)
