"""When a service's end-to-end probe is due (``ProbePacer``): at every check until a process first answers and
after a failure, else once per ``probe_interval``."""

from __future__ import annotations

from haoscar.ha.services.base import ProbePacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_new_process_is_probed_at_every_check_until_it_answers() -> None:
    clock, first = Clock(), object()
    pacer = ProbePacer(5.0, clock)
    assert pacer.due(first)
    assert pacer.record(first, "not answering yet") == "not answering yet"
    assert pacer.due(first)  # still failing: probed again at once
    assert pacer.record(first, None) is None
    clock.now += 4.9
    assert not pacer.due(first)
    clock.now += 0.1
    assert pacer.due(first)


def test_a_failed_probe_and_a_new_process_are_probed_at_once() -> None:
    clock, first, second = Clock(), object(), object()
    pacer = ProbePacer(5.0, clock)
    pacer.record(first, None)
    assert not pacer.due(first)
    assert pacer.due(second)  # a restart: the new process has not answered yet
    pacer.record(first, "GET failed")
    assert pacer.due(first)
