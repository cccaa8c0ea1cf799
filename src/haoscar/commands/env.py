"""The environment every command takes: the one door to side effects (pcs's ``LibraryEnvironment``).

A command is ``commands.X(env, request) -> report``. It never reads the process environment, opens the database or
starts a program by itself: it asks ``env``. The CLI builds one ``Env`` from its global options; tests build one
with fakes (a temporary state directory, a recording runner, a fixed clock, a list as progress sink).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from haoscar.db.session import Database


class Runner(Protocol):
    """Runs a program to completion (the process transport)."""

    def __call__(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]: ...


def run_program(
    argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real process transport: no shell, output captured, never raises for a non-zero exit."""
    return subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, check=False)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """Measurements use the monotonic clock; the wall clock is only for what a person reads (timestamps)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


Progress = Callable[[str], None]
"""A progress sink: one human-readable line per step. The CLI turns it into Rich output; tests collect it."""


def no_progress(_line: str) -> None:
    """The default sink: commands run silently unless someone listens."""


Meter = Callable[[float, str], None]
"""A progress sink for long transfers: the share done in percent and what is being done (a progress bar)."""


def no_meter(_percent: float, _what: str) -> None:
    """The default meter: nobody watches the bar."""


@dataclass
class Env:
    """What a command may touch. The database opens lazily, on first use, so a command that does not need it (a
    lab command, ``spec validate``) never creates ``haoscar.db``."""

    state_dir: Path
    run: Runner = run_program
    clock: Clock = field(default_factory=SystemClock)
    progress: Progress = no_progress
    meter: Meter = no_meter
    _database: Database | None = field(default=None, init=False, repr=False)

    @property
    def database(self) -> Database:
        if self._database is None:
            from haoscar.commands.wiring import open_cluster_database  # replication's commit hook attached

            self._database = open_cluster_database(self.state_dir)
        return self._database

    @property
    def database_opened(self) -> bool:
        return self._database is not None

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
