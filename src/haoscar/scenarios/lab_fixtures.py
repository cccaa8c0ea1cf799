"""pytest fixtures for lab tests: each test gets fresh labs with unique names, always taken down afterwards.

Use them from a ``conftest.py``::

    from haoscar.scenarios.lab_fixtures import lab, make_lab  # noqa: F401

``make_lab(spec_or_path=None, name=None)`` builds a lab (the default lab.yaml when no spec is given) in a
temporary state directory; ``lab`` is one lab of the default spec. Nothing is skipped when not root: ``Lab.up``
raises NeedsRoot and the test fails loudly, because lab tests are meant to run (as root) in CI.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab, down_lab
from haoscar.spec import ClusterSpec

MakeLab = Callable[..., Lab]
_counter = itertools.count()


def unique_lab_name(prefix: str = "t") -> str:
    """Unique across the processes of this machine (pid) and within one (counter); at most 12 characters."""
    return f"{prefix}{os.getpid() % 100000}-{next(_counter)}"[:12]


@pytest.fixture
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeLab]:
    made: list[tuple[str, Lab | None]] = []
    state_dir = tmp_path_factory.mktemp("labstate")

    def factory(spec_or_path: ClusterSpec | Path | str | None = None, name: str | None = None) -> Lab:
        lab_name = name or unique_lab_name()
        made.append((lab_name, None))  # recorded before up: whatever a failed up left is swept by name
        lab = Lab.up(spec_or_path if spec_or_path is not None else default_spec(), lab_name, state_dir)
        made[-1] = (lab_name, lab)
        return lab

    yield factory
    errors = []
    for lab_name, lab in reversed(made):
        try:
            # Down through the very Lab object that started the hosts, so it also reaps their starters.
            if lab is not None:
                lab.down()
            else:
                down_lab(lab_name, state_dir)
        except Exception as exc:  # keep tearing the others down, report at the end
            errors.append(f"{lab_name}: {exc}")
    if errors:
        raise RuntimeError("lab teardown failed: " + "; ".join(errors))


@pytest.fixture
def lab(make_lab: MakeLab) -> Lab:
    return make_lab()


def pings(lab: Lab, host: str, address: str, deadline: float = 3.0) -> bool:
    """True when ``host`` gets an echo reply from ``address`` within ``deadline`` seconds (one probe every
    0.2 s, so a fresh ARP resolution or a link coming back has time; returns at the first reply).

    ``ping -w`` gives up at the first *error* too: an echo request queued on a neighbour entry whose resolution
    fails (its last ARP probe went out while a fault still dropped it, ~3 s after an earlier probe started it)
    comes back as "Destination Host Unreachable" although the path works again. So a ping that ends early
    without a reply is run again until the deadline: only a deadline without any reply is False.
    """
    end = time.monotonic() + deadline
    while True:
        wait = max(1, math.ceil(end - time.monotonic()))  # -w takes whole seconds
        argv = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(wait), address]
        if lab.exec(host, argv, check=False, timeout=wait + 10).returncode == 0:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)  # the error came at once: let the neighbour entry settle (FAILED resolves afresh)
