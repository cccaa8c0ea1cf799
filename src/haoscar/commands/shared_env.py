"""Envs for a long-running server (the web console): a new ``Env`` per request, all over one cluster database.

Opening the database runs the schema check under a file lock: worth doing once per process, not once per page.
The engine's connection pool is thread-safe, so requests run in worker threads share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.commands.env import Clock, Env, SystemClock
from haoscar.db.session import Database


@dataclass
class SharedEnv(Env):
    """An Env whose database is the process's shared one; closing it (after the request) leaves that open."""

    shared: Callable[[], Database] | None = field(default=None, repr=False)

    @property
    def database(self) -> Database:
        if self.shared is None:
            return super().database
        return self.shared()

    @property
    def database_opened(self) -> bool:
        return self.shared is not None or super().database_opened

    def close(self) -> None:
        if self.shared is None:
            super().close()


def shared_env_factory(state_dir: Path, clock: Clock | None = None) -> Callable[[], Env]:
    """``make_env`` for a server process: the cluster database is opened on first use (with replication's commit
    hook, as every haoscar process opens it) and kept for the process's life; ``clock`` for tests."""
    the_clock = clock or SystemClock()
    lock = threading.Lock()
    opened: list[Database] = []

    def database() -> Database:
        with lock:
            if not opened:
                from haoscar.commands.wiring import open_cluster_database

                opened.append(open_cluster_database(state_dir))
            return opened[0]

    def make_env() -> Env:
        return SharedEnv(state_dir=state_dir, clock=the_clock, shared=database)

    return make_env
