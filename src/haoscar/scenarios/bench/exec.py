"""``haoscar bench exec``: ``haoscar exec @compute -- hostname`` against N lab hosts running sshd, side by side with
plain ``clush -w NODES hostname`` on the same hosts in the same run (the CLI is cli/bench_exec.py).

Everything runs inside the head ``head1`` as whole programs (Python start-up included), fan-out 64, the hosts' keys
already known (one warm-up ``exec`` first). Each round measures, who goes first alternating between the two tools:

- ``seconds_cold``: ``haoscar exec`` with no connection held (every master ended first): a login per node;
- ``seconds_warm``: the same again right after, on the connections the cold run left open (``ControlPersist``,
  ``provision.fanout_mux``): what an admin waits for on every exec after the first of a working session;
- ``clush_seconds``: plain clush with ssh as it comes (no multiplexing, OpenSSH's default key exchange; only the
  nodes' addresses, the cluster key and the known hosts given, through a configuration file of their own): a login
  per node, every time;
- ``clush_mux_seconds_cold`` / ``_warm``: clush with haoscar's own ssh configuration (``-o "-F STATE/ssh/config"``,
  so multiplexed too), cold and warm: the like-for-like comparison.

``seconds`` is ``seconds_warm`` (the figure an admin sees for a typical exec) and the floor compares it with
``clush_seconds``: ``seconds`` <= 1.5 x ``clush_seconds`` and <= 5 s for 200 nodes. Medians of the rounds.
``cpu_*`` are the CPU seconds of each program and its ssh clients, which other load on the machine does not move
(a warm run's masters are not its children: their share, relaying one session each, is not counted). The hosts'
sshd run with an empty root home (``exec_lab``: this machine's /root/.bashrc would cost ~1 s a login to both).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haoscar.scenarios.bench.exec_lab import (
    exec_lab_spec,
    haoscar_in,
    lab_sshds,
    plain_ssh_config,
    prepare_state,
    stop_masters,
)

MAX_RATIO, MAX_SECONDS = 1.5, 5.0
HEAD = "head1"
SECONDS_IS = (
    "seconds_warm: haoscar exec while the connections of a previous exec are held (ControlPersist 600 s), i.e. "
    "every exec after the first of an admin's working session; seconds_cold is the first one (a login per node)"
)


def _check_exec(done: Any, names: list[str]) -> float:
    """The exec's own fan-out seconds, once every node answered with its own name."""
    if done.returncode != 0:
        raise RuntimeError(f"haoscar exec failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    wrong = [name for name in names if report["results"][name]["output"] != name]
    if wrong:
        raise RuntimeError(f"haoscar exec: wrong or missing output from {', '.join(wrong[:5])}")
    return float(report["seconds"])


def _check_clush(done: Any, names: list[str]) -> None:
    lines = set(done.stdout.splitlines())
    missing = [name for name in names if f"{name}: {name}" not in lines]
    if done.returncode != 0 or missing:
        raise RuntimeError(f"clush failed ({done.returncode}); no answer from {', '.join(missing[:5])}: {done.stderr}")


def _children_cpu() -> float:
    """CPU seconds of the finished programs this process started (haoscar or clush, and their ssh clients): what
    the run costs whatever else the machine is doing; sshd's share on the nodes is the same for both."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Rounds:
    """The measurements of every round, by key (module docstring)."""

    def __init__(self, lab: Any, state: Path, names: list[str], fanout: int) -> None:
        self.lab, self.state, self.names, self.fanout = lab, state, names, fanout
        self.samples: dict[str, list[float]] = {}
        self.loads: list[float] = []
        clush = [str(Path(sys.executable).parent / "clush"), "-f", str(fanout), "-w", f"node[001-{len(names):03d}]"]
        self.clush_plain = [*clush, "-o", f"-F {plain_ssh_config(state)}", "hostname"]
        self.clush_mux = [*clush, "-o", f"-F {state / 'ssh' / 'config'}", "hostname"]

    def _add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def _timed(self, key: str, run: Callable[[], Any]) -> Any:
        cpu, started = _children_cpu(), time.monotonic()
        done = run()
        self._add(key, time.monotonic() - started)
        self._add(key.replace("seconds", "cpu_seconds", 1), _children_cpu() - cpu)
        self.loads.append(os.getloadavg()[0])
        return done

    def haoscar(self) -> None:
        argv = ["exec", "--json", "-f", str(self.fanout), "@compute", "--", "hostname"]
        for temperature in ("cold", "warm"):
            if temperature == "cold":
                stop_masters(self.lab, HEAD, self.state)
            done = self._timed(f"seconds_{temperature}", lambda: haoscar_in(self.lab, HEAD, self.state, argv))
            self._add(f"fanout_seconds_{temperature}", _check_exec(done, self.names))

    def clush(self) -> None:
        _check_clush(self._timed("clush_seconds", lambda: self._clush(self.clush_plain)), self.names)
        stop_masters(self.lab, HEAD, self.state)
        for temperature in ("cold", "warm"):
            done = self._timed(f"clush_mux_seconds_{temperature}", lambda: self._clush(self.clush_mux))
            _check_clush(done, self.names)

    def _clush(self, argv: list[str]) -> Any:
        return self.lab.exec(HEAD, argv, check=False, timeout=300)

    def run(self, runs: int) -> None:
        for round_ in range(runs):
            # Who goes first alternates, so neither always meets a machine just warmed (or loaded) by the other.
            first, second = (self.haoscar, self.clush) if round_ % 2 == 0 else (self.clush, self.haoscar)
            first()
            second()


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    median = {key: statistics.median(values) for key, values in samples.items()}
    seconds, clush = median["seconds_warm"], median["clush_seconds"]
    return {
        "seconds": round(seconds, 3),
        "seconds_is": SECONDS_IS,
        "clush_seconds": round(clush, 3),
        "ratio": round(seconds / clush, 3),
        "within_floor": seconds <= MAX_RATIO * clush and seconds <= MAX_SECONDS,
        "floor": {"max_ratio": MAX_RATIO, "max_seconds": MAX_SECONDS},
        **{key: round(value, 3) for key, value in sorted(median.items())},
        "ratio_cold": round(median["seconds_cold"] / clush, 3),
        "ratio_like_for_like_cold": round(median["seconds_cold"] / median["clush_mux_seconds_cold"], 3),
        "ratio_like_for_like_warm": round(seconds / median["clush_mux_seconds_warm"], 3),
    }


def run_exec_bench(
    nodes: int = 200, runs: int = 3, fanout: int = 64, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """The bench; a plain dict (see the module docstring)."""
    from haoscar.lab import Lab
    from haoscar.scenarios.lab_fixtures import unique_lab_name

    spec = exec_lab_spec(nodes)
    names = [f"node{index:03d}" for index in range(1, nodes + 1)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-exec-") as tmp:
        state = Path(tmp)
        public_key = prepare_state(state, spec)
        progress(f"bringing {nodes + 4} lab hosts up")
        started = time.monotonic()
        lab = Lab.up(spec, unique_lab_name("x"), state)
        up_s = time.monotonic() - started
        try:
            progress(f"starting {nodes} sshd")
            started = time.monotonic()
            with lab_sshds(lab, names, [public_key], timeout=120):
                sshd_s = time.monotonic() - started
                progress("warm-up exec (host keys learnt)")
                _check_exec(haoscar_in(lab, HEAD, state, ["exec", "--json", "@compute", "--", "hostname"]), names)
                progress(f"{runs} rounds of haoscar exec (cold, warm) and clush (plain; haoscar's config cold, warm)")
                rounds = _Rounds(lab, state, names, fanout)
                rounds.run(runs)
                stop_masters(lab, HEAD, state)
        finally:
            lab.down()
    return {
        "nodes": nodes,
        **_summary(rounds.samples),
        "runs": {key: [round(value, 3) for value in values] for key, values in rounds.samples.items()},
        "fanout": fanout,
        "lab_up_s": round(up_s, 3),
        "sshd_start_s": round(sshd_s, 3),
        "load_before": [round(x, 2) for x in load_before],
        "load_during": [round(x, 2) for x in rounds.loads],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
