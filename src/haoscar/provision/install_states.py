"""A node's install lifecycle as an explicit state machine: one table of allowed transitions, enforced by the
setter (like the HA role's, ``haoscar.ha.state``).

The database keeps the value as text (``nodes.install_state``); ``InstallState`` is a ``StrEnum`` so it compares
equal to that text. Creating a node sets its first state directly (``defined``, ``mac-assigned``, or ``installed``
for a head node that exists already); every later change goes through ``set_install_state``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol

from haoscar.errors import UserError


class InstallState(StrEnum):
    DEFINED = "defined"  # in the database, no MAC address yet
    MAC_ASSIGNED = "mac-assigned"  # its private MAC is known: the boot server can recognise it
    NETBOOT = "netboot"  # it fetched its iPXE script and is booting into the installer
    INSTALLING = "installing"  # the installer reports progress
    INSTALLED = "installed"  # the installer reported completion: it boots from its disk
    FAILED = "failed"  # the installer reported a failure, or stopped reporting
    UP = "up"  # installed and seen running

    @property
    def label(self) -> str:
        return self.value


_S = InstallState
# A failure can be reported (or a stall detected) by any installer that runs, whatever the head saw before; a
# completion only ends an install (one that was marked failed by the stall watcher may still complete). The boot
# server marks a node ``netboot`` whenever it serves it the installer, so a re-install can start from any state
# that has a MAC address.
TRANSITIONS: Final[dict[InstallState, frozenset[InstallState]]] = {
    _S.DEFINED: frozenset({_S.MAC_ASSIGNED}),
    _S.MAC_ASSIGNED: frozenset({_S.NETBOOT, _S.INSTALLING, _S.FAILED}),
    _S.NETBOOT: frozenset({_S.INSTALLING, _S.FAILED}),
    _S.INSTALLING: frozenset({_S.INSTALLED, _S.FAILED, _S.NETBOOT}),
    _S.INSTALLED: frozenset({_S.NETBOOT, _S.INSTALLING, _S.FAILED, _S.UP}),
    _S.FAILED: frozenset({_S.NETBOOT, _S.INSTALLING, _S.INSTALLED}),
    _S.UP: frozenset({_S.NETBOOT, _S.INSTALLING, _S.FAILED, _S.INSTALLED}),
}
# An install is running or has ended badly: what ``haoscar install monitor`` lists even without live numbers.
WATCHED: Final = frozenset({_S.INSTALLING, _S.FAILED})


class IllegalInstallTransition(UserError):
    """A report that does not fit the node's lifecycle (e.g. an install report for a node with no MAC)."""


class HasInstallState(Protocol):
    name: str
    install_state: str


def parse(value: str) -> InstallState:
    try:
        return InstallState(value)
    except ValueError:
        known = ", ".join(s.value for s in InstallState)
        raise UserError(f"unknown install state {value!r}; one of: {known}") from None


def check_transition(old: str, new: InstallState, node: str = "the node") -> InstallState:
    """``new`` when ``old -> new`` is allowed (staying in the same state always is); IllegalInstallTransition
    otherwise."""
    current = parse(old)
    if new != current and new not in TRANSITIONS[current]:
        allowed = ", ".join(s.value for s in sorted(TRANSITIONS[current])) or "nothing"
        raise IllegalInstallTransition(
            f"{node} is {current.value}: it cannot become {new.value} (from {current.value}: {allowed})"
        )
    return new


def set_install_state(node: HasInstallState, new: InstallState) -> bool:
    """The setter: move ``node`` to ``new`` if the table allows it; True when the state changed."""
    check_transition(node.install_state, new, node.name)
    changed = node.install_state != new
    node.install_state = new.value
    return changed
