"""``haoscar standby clone`` as ``op(env, request) -> report``: the guided flow of
:mod:`haoscar.commands.standby_clone` run in the environment's state directory.

A module of its own because the flow imports :mod:`haoscar.commands.standby` (Add Standby Server is one of its
steps): the door cannot live there without an import cycle.
"""

from __future__ import annotations

from haoscar.commands.env import Env
from haoscar.commands.standby_clone import CloneOptions, CloneReport, Observer, StepResult, run_clone

__all__ = ["CloneOptions", "CloneReport", "StepResult", "standby_clone"]


def standby_clone(env: Env, request: CloneOptions, observe: Observer | None = None) -> CloneReport:
    """Fetch the primary's image, add the standby, network boot, MAC, DHCP, wait for the install, Complete
    Installation; ``observe`` receives each step's start and result and the install's progress."""
    return run_clone(env.state_dir, request, observe)
