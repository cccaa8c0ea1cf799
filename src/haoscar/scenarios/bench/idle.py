"""``haoscar bench idle``: what the active head's HA costs when nothing happens, beside keepalived in the same run.

haoscar runs in its shipped configuration (``shipped.py``: replication on, dnsmasq and the token API as services,
TLS, per-purpose keys, witness, lab fencing) at the default profile. Once the pair has settled, the bench samples
for ``seconds`` the **whole process tree** of the active head's daemon: the daemon itself (replication's watcher,
batch loop and database channel run inside it) and every child it runs (the listener process of the read-only
status and the token API, a warm netboot renderer, ``tlspipe`` and the rsync daemon of replication while a returning
peer pulls - on the active head they run on demand -, rsync clients of a pass, and the services). CPU is utime +
stime from ``/proc/PID/stat`` over the window, in % of one core, summed over the processes; memory is ``VmRSS``
summed (it counts pages the processes share more than once, so it errs high) and ``Pss`` from ``smaps_rollup``
summed (shared pages split).
The haoscar figure (``idle_cpu_pct``, ``rss_mb``) leaves out the services it manages (dnsmasq), which keepalived
would not run either; they are reported apart. Then keepalived runs on the same lab (parent and VRRP child, at
``advert_int`` equal to haoscar's heartbeat interval) and is sampled the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.lab.lab import Lab
from haoscar.scenarios.bench.failover import HaoscarPair, bench_spec
from haoscar.scenarios.bench.keepalived_peer import KeepalivedPair
from haoscar.scenarios.bench.shipped import config_block, shipped_overrides
from haoscar.spec import ClusterSpec

SAMPLE_S = 10.0
PFN_MASK = (1 << 55) - 1  # bits 0-54 of a pagemap entry
CPU_LIMIT_PCT = 1.0
RSS_LIMIT_MB = 80.0
# Services the daemon manages for the cluster: their cost is the service's, not HA's (reported apart).
SERVICE_PROGRAMS = frozenset({"dnsmasq", "slurmctld", "munged"})

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProcSample:
    pid: int
    name: str
    ticks: int
    rss_kb: int
    pss_kb: int


def process_name(argv: list[str]) -> str:
    """A readable name: the module of ``python -m MODULE``, else the program's base name."""
    if not argv:
        return "?"
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    return os.path.basename(argv[0])


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from each process's parent in /proc), ``pid`` first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def sample(pid: int) -> ProcSample | None:
    """One process's CPU ticks and memory now, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text() if os.path.exists(f"/proc/{pid}/smaps_rollup") else ""
    except OSError:
        return None
    return ProcSample(
        pid,
        process_name([a.decode(errors="replace") for a in argv if a]),
        int(fields[11]) + int(fields[12]),  # utime + stime (fields 14 and 15 of proc(5))
        _kb(status, "VmRSS:"),
        _kb(rollup, "Pss:"),
    )


def _kb(text: str, label: str) -> int:
    for line in text.splitlines():
        if line.startswith(label):
            return int(line.split()[1])
    return 0


def measure_tree(roots: list[int], seconds: float) -> list[dict[str, Any]]:
    """Per process of the trees under ``roots``: CPU % of one core over ``seconds``, RSS and PSS in MB at the end.
    A process that ends inside the window is left out; one that starts in it counts from its start."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {s.pid: s for pid in roots for p in children_of(pid) if (s := sample(p)) is not None}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    out = []
    for pid in sorted({p for root in roots for p in children_of(root)}):
        now = sample(pid)
        if now is None:
            continue
        ticks = now.ticks - before[pid].ticks if pid in before else now.ticks
        out.append(
            {
                "pid": pid,
                "name": now.name,
                "cpu_pct": round(100.0 * ticks / hz / elapsed, 3),
                "rss_mb": round(now.rss_kb / 1024, 1),
                "pss_mb": round(now.pss_kb / 1024, 1),
            }
        )
    return out


def resident_pages(pid: int) -> set[int]:
    """The physical frames a process has resident (``/proc/PID/pagemap``, root only): pages it shares with other
    processes have the same frame number, so a union over a process tree counts each page once."""
    frames: set[int] = set()
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if start >= 1 << 47:  # [vsyscall]: not readable through pagemap
                    continue
                pagemap.seek(start // page * 8)
                raw = pagemap.read((end - start) // page * 8)
                for (entry,) in struct.iter_unpack("<Q", raw):
                    if entry >> 63 & 1 and entry & PFN_MASK:
                        frames.add(entry & PFN_MASK)
    except OSError:
        pass
    return frames


def unique_mb(pids: list[int]) -> float:
    """Resident memory of these processes with every page counted once (0 when pagemap hides frame numbers)."""
    frames: set[int] = set()
    for pid in pids:
        frames |= resident_pages(pid)
    return round(len(frames) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def summarize(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the processes: HA's own (services left out) and the services apart."""
    own = [p for p in processes if p["name"] not in SERVICE_PROGRAMS]
    services = [p for p in processes if p["name"] in SERVICE_PROGRAMS]

    def total(found: list[dict[str, Any]], name: str) -> float:
        return round(sum(float(p[name]) for p in found), 2)

    return {
        "cpu_pct": total(own, "cpu_pct"),
        "rss_mb": total(own, "rss_mb"),
        "pss_mb": total(own, "pss_mb"),
        "unique_mb": unique_mb([int(p["pid"]) for p in own]),
        "processes": len(own),
        "services_cpu_pct": total(services, "cpu_pct"),
        "services_rss_mb": total(services, "rss_mb"),
        "per_process": processes,
    }


def run_idle_bench(
    spec: ClusterSpec, state_dir: Path, seconds: float = SAMPLE_S, note: Progress = lambda _m: None
) -> dict[str, Any]:
    """haoscar's active head, then keepalived's master, each sampled for ``seconds`` on one lab (always down)."""
    name = f"bi{os.getpid() % 100000}"
    spec = bench_spec(spec)
    workdir = Path(tempfile.mkdtemp(prefix="haoscar-bench-idle-"))
    note(f"lab {name} up")
    lab = Lab.up(spec, name, state_dir)
    try:
        pair = HaoscarPair(lab, spec, "default", **shipped_overrides(spec))
        note("haoscar starting")
        pair.start()
        try:
            time.sleep(max(pair.settle_s, 3.0))  # the start-up work (renders, first replication pass) is over
            note(f"haoscar: sampling {seconds:g} s")
            ha = pair.running()
            load_before = os.getloadavg()[0]
            active_pid, standby_pid = ha.proc(ha.primary).pid, ha.proc(ha.standby).pid
            both = measure_tree([active_pid, standby_pid], seconds)  # one window for both heads
            active_tree = set(children_of(active_pid))
            haoscar = summarize([p for p in both if p["pid"] in active_tree])
            haoscar["standby_head"] = summarize([p for p in both if p["pid"] not in active_tree])
            haoscar["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            config = config_block(pair.effective.ha, profile="default")
        finally:
            pair.stop()
        advert = pair.effective.ha.heartbeat_interval
        keepalived = KeepalivedPair(lab, spec, advert, workdir / "keepalived")
        note("keepalived starting")
        keepalived.start()
        try:
            time.sleep(keepalived.settle_s)
            note(f"keepalived: sampling {seconds:g} s")
            peer = summarize(measure_tree([keepalived.procs[spec.heads.primary.hostname].pid], seconds))
        finally:
            keepalived.stop()
    finally:
        note(f"lab {name} down")
        lab.down()
    shutil.rmtree(workdir, ignore_errors=True)
    return report(config, haoscar, peer, advert, seconds)


def report(
    config: dict[str, Any], haoscar: dict[str, Any], keepalived: dict[str, Any], advert: float, seconds: float
) -> dict[str, Any]:
    floors = {
        "idle_cpu_le_1_pct": {"value": haoscar["cpu_pct"], "limit": CPU_LIMIT_PCT},
        "rss_le_80_mb": {"value": haoscar["rss_mb"], "limit": RSS_LIMIT_MB},
    }
    for floor in floors.values():
        floor["pass"] = floor["value"] <= floor["limit"]
    return {
        "config": config,
        "idle_cpu_pct": haoscar["cpu_pct"],
        "rss_mb": haoscar["rss_mb"],
        "pss_mb": haoscar["pss_mb"],
        "unique_mb": haoscar["unique_mb"],
        "counted": "the active head's daemon (replication runs inside it) and every child process (the status "
        "listener, which also serves the token API, a warm netboot renderer if one runs, tlspipe and the rsync daemon "
        "while a returning peer pulls, rsync clients of a pass); managed services "
        "(dnsmasq) apart in services_*; CPU and RSS summed over the processes (RSS counts a page shared by N of "
        "them N times, PSS splits it, also with processes outside the tree); unique_mb: the tree's resident pages "
        "each counted once (pagemap frame numbers); the standby head's own tree in haoscar.standby_head",
        "sample_s": seconds,
        # one clock tick over the window: a figure of 0 means less than this
        "cpu_resolution_pct": round(100.0 / os.sysconf("SC_CLK_TCK") / seconds, 3),
        "haoscar": haoscar,
        "keepalived": {**keepalived, "advert_int": advert},
        "floors": floors,
        "all_floors_pass": all(f["pass"] for f in floors.values()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
