"""A file saved the way slurmctld saves its state (written as NAME.new, closed, link()ed to NAME, NAME.new unlinked)
reaches the standby through the real daemons (rsync over TLS) while the saves go on, faster than the 2 s quiet
period after which a file with no close event used to be shipped: before the fix, a standby never saw any of them
until the saves stopped."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.scenarios.lab_fixtures import MakeLab
from haoscar.scenarios.repl_lab import ReplLab, repl_spec

pytestmark = pytest.mark.lab

SAVES = 16
EVERY_S = 0.5  # a quarter of the quiet period (open_write_quiet_s = 2 s)


@pytest.fixture
def heads(make_lab: MakeLab) -> Iterator[ReplLab]:
    rl = ReplLab(make_lab(), repl_spec(default_spec()))
    rl.setup()
    try:
        rl.start(rl.standby, "target")
        rl.start(rl.primary, "source")
        rl.wait_in_sync(60)
        yield rl
    finally:
        rl.stop_all()


def save(directory: Path, version: int) -> None:
    new, name = directory / "job_state.new", directory / "job_state"
    new.write_bytes(f"queue version {version}\n".encode() * 100)
    if name.exists():
        os.unlink(name)
    os.link(new, name)
    os.unlink(new)


def test_state_saved_by_link_reaches_the_standby_while_the_saves_go_on(heads: ReplLab) -> None:
    rl = heads
    src, dst = rl.path(rl.primary, "/home/sched"), rl.path(rl.standby, "/home/sched")
    src.mkdir()
    seen: set[bytes] = set()  # the standby's versions observed while the saves were still going on
    for version in range(SAVES):
        save(src, version)
        time.sleep(EVERY_S)
        if (dst / "job_state").exists():
            seen.add((dst / "job_state").read_bytes())
    assert len(seen) >= 3, f"the standby saw {len(seen)} of {SAVES} versions while the saves went on"
    print(f"the standby held {len(seen)} distinct versions of {SAVES} saves while they went on")
    last = (src / "job_state").read_bytes()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
        (dst / "job_state").exists() and (dst / "job_state").read_bytes() == last
    ):
        time.sleep(0.05)
    assert (dst / "job_state").read_bytes() == last, (rl.status(rl.primary), rl.logs(rl.primary))
    assert not (dst / "job_state.new").exists()
