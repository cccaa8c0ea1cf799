"""The node install lifecycle: one transition table, enforced by the setter."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from haoscar.errors import UserError
from haoscar.provision.install_states import (
    TRANSITIONS,
    IllegalInstallTransition,
    InstallState,
    check_transition,
    set_install_state,
)


@dataclass
class Row:
    name: str
    install_state: str


def test_every_state_has_a_row_and_the_values_are_the_database_text() -> None:
    assert set(TRANSITIONS) == set(InstallState)
    assert [s.value for s in InstallState] == [
        "defined", "mac-assigned", "netboot", "installing", "installed", "failed", "up",
    ]  # fmt: skip
    column_text: str = "installing"
    assert column_text == InstallState.INSTALLING  # compares equal to the column's text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("defined", InstallState.MAC_ASSIGNED),
        ("mac-assigned", InstallState.NETBOOT),
        ("netboot", InstallState.INSTALLING),
        ("installing", InstallState.INSTALLED),
        ("installing", InstallState.FAILED),
        ("failed", InstallState.INSTALLED),  # a node the stall watcher gave up on completed after all
        ("installed", InstallState.NETBOOT),  # a re-install
        ("failed", InstallState.INSTALLING),
    ],
)
def test_the_lifecycle_moves_along_the_table(old: str, new: InstallState) -> None:
    row = Row("node01", old)
    assert set_install_state(row, new) is True
    assert row.install_state == new.value


def test_staying_in_the_same_state_is_no_change() -> None:
    row = Row("node01", "installing")
    assert set_install_state(row, InstallState.INSTALLING) is False
    assert row.install_state == "installing"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("defined", InstallState.INSTALLING),  # no MAC: no installer can have reported for it
        ("defined", InstallState.INSTALLED),
        ("mac-assigned", InstallState.INSTALLED),  # never installed without an install
        ("netboot", InstallState.DEFINED),
        ("installed", InstallState.MAC_ASSIGNED),
    ],
)
def test_a_transition_outside_the_table_is_refused_and_nothing_changes(old: str, new: InstallState) -> None:
    row = Row("node01", old)
    with pytest.raises(IllegalInstallTransition, match=f"node01 is {old}: it cannot become {new.value}"):
        set_install_state(row, new)
    assert row.install_state == old


def test_an_unknown_stored_state_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown install state 'partying'; one of: defined, mac-assigned"):
        check_transition("partying", InstallState.INSTALLING)
