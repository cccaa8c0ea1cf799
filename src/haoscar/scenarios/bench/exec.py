"""``haoscar bench exec``: ``haoscar exec @compute -- hostname`` against N lab hosts running sshd, side by side with
plain ``clush -w NODES hostname`` on the same hosts in the same run (the CLI is cli/bench_exec.py).

Both run inside the head ``head1`` as whole programs (Python start-up included), with the same ssh client, key and
configuration (``STATE/ssh/config``, which clush gets with ``-o "-F ..."``), the same fan-out (64) and the hosts'
keys already known (one warm-up ``exec`` first). Each round runs both (who goes first alternates); the medians
are reported. ``seconds`` is the whole ``haoscar exec`` program as a user waits for it, ``fanout_seconds`` the part
ClusterShell spends (the rest is Python start-up, imports and opening the database).
``cpu_seconds`` / ``clush_cpu_seconds`` are the CPU of each program and its ssh clients, which other load on the
machine does not move. The hosts' sshd run with an empty root home (``exec_lab``: this machine's /root/.bashrc
would cost ~1 s a login to both tools). Floor: ``seconds`` <= 1.5 x ``clush_seconds`` and <= 5 s for 200 nodes.
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

from haoscar.scenarios.bench.exec_lab import exec_lab_spec, haoscar_in, lab_sshds, prepare_state

MAX_RATIO, MAX_SECONDS = 1.5, 5.0
HEAD = "head1"


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


def _rounds(lab: Any, state: Path, names: list[str], runs: int, fanout: int) -> dict[str, list[float]]:
    nodeset = f"node[001-{len(names):03d}]"
    clush = [str(Path(sys.executable).parent / "clush"), "-f", str(fanout), "-w", nodeset]
    clush += ["-o", f"-F {state / 'ssh' / 'config'}", "hostname"]
    samples: dict[str, list[float]] = {key: [] for key in ("seconds", "fanout_seconds", "clush_seconds")}
    samples |= {"cpu_seconds": [], "clush_cpu_seconds": []}
    for round_ in range(runs):
        # Who goes first alternates, so neither always meets a machine just warmed (or loaded) by the other.
        for which in ("haoscar", "clush") if round_ % 2 == 0 else ("clush", "haoscar"):
            cpu, started = _children_cpu(), time.monotonic()
            if which == "haoscar":
                done = haoscar_in(lab, HEAD, state, ["exec", "--json", "-f", str(fanout), "@compute", "--", "hostname"])
                samples["seconds"].append(time.monotonic() - started)
                samples["cpu_seconds"].append(_children_cpu() - cpu)
                samples["fanout_seconds"].append(_check_exec(done, names))
            else:
                done = lab.exec(HEAD, clush, check=False, timeout=300)
                samples["clush_seconds"].append(time.monotonic() - started)
                samples["clush_cpu_seconds"].append(_children_cpu() - cpu)
                _check_clush(done, names)
    return samples


def _children_cpu() -> float:
    """CPU seconds of the finished programs this process started (haoscar or clush, and their ssh clients): what
    the run costs whatever else the machine is doing; sshd's share on the nodes is the same for both."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
                progress(f"{runs} rounds of haoscar exec and clush")
                samples = _rounds(lab, state, names, runs, fanout)
        finally:
            lab.down()
    seconds, clush_seconds = statistics.median(samples["seconds"]), statistics.median(samples["clush_seconds"])
    return {
        "nodes": nodes,
        "seconds": round(seconds, 3),
        "clush_seconds": round(clush_seconds, 3),
        "ratio": round(seconds / clush_seconds, 3),
        "fanout_seconds": round(statistics.median(samples["fanout_seconds"]), 3),
        "cpu_seconds": round(statistics.median(samples["cpu_seconds"]), 3),
        "clush_cpu_seconds": round(statistics.median(samples["clush_cpu_seconds"]), 3),
        "within_floor": seconds <= MAX_RATIO * clush_seconds and seconds <= MAX_SECONDS,
        "floor": {"max_ratio": MAX_RATIO, "max_seconds": MAX_SECONDS},
        "runs": {key: [round(value, 3) for value in values] for key, values in samples.items()},
        "fanout": fanout,
        "lab_up_s": round(up_s, 3),
        "sshd_start_s": round(sshd_s, 3),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
