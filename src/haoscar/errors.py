"""Errors a user can cause. The CLI prints them as one clear message and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, an unknown name, a missing prerequisite.

    The message names what is wrong and what would be right; no traceback is shown.
    """

    exit_code = 2

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details])


class NotFound(UserError):
    """An unknown node, image, lab, host, ..."""


class NeedsRoot(UserError):
    """The operation needs root (network namespaces, netlink, raw sockets)."""
