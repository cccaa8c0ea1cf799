"""``haoscar bench replication``: what a crash of the active head costs, measured in a lab with two heads.

Run 1 (steady): ``rate`` files per second (4 KB - 1 MB, each fsync'd and closed, its acknowledgement time noted)
for ``seconds`` on the active head, plus ``db_changes`` database changes; each file's lag is the time its complete
copy appeared on the standby (rsync renames it into place; seen by inotify there) minus its acknowledgement.
Run 2 (crash): the same load, and the active head is crashed in the middle (every process SIGKILLed, links down).
Counted as lost: files acknowledged more than ``LOSS_BOUND_S`` before the crash that are missing or different on the
standby, and database changes acknowledged before the crash that it does not have.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from haoscar.commands.wiring import open_cluster_database
from haoscar.db.session import record_event
from haoscar.lab.defaults import default_spec
from haoscar.lab.lab import Lab, down_lab, require_root
from haoscar.scenarios.repl_lab import ReplLab, db_messages, repl_spec

LOSS_BOUND_S = 1.0
MIN_SIZE, MAX_SIZE = 4 * 1024, 1024 * 1024


@dataclass
class Written:
    ack: float
    digest: str
    size: int


@dataclass
class Load:
    """One run's writers: files into ``directory`` on the source, database changes into its state directory."""

    directory: Path
    state_dir: Path
    rate: float
    db_changes: int
    seconds: float
    tag: str
    files: dict[str, Written] = field(default_factory=dict)
    db_acked: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        noise = random.Random(7).randbytes(MAX_SIZE)
        sizes = random.Random(11)
        start = time.monotonic()
        i = 0
        while not self.stop.is_set() and time.monotonic() - start < self.seconds:
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            name = f"f{i:06d}"
            size = sizes.randint(MIN_SIZE, MAX_SIZE)
            data = f"{self.tag} {name}\n".encode() + noise[: size - 32]
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            # Acknowledged: written, fsync'd and closed, as a program would report to its user.
            self.files[name] = Written(time.monotonic(), hashlib.sha1(data).hexdigest(), len(data))
            i += 1

    def run_db(self) -> None:
        try:
            db = open_cluster_database(self.state_dir)
        except Exception as exc:
            self.errors.append(f"database: {exc}")
            return
        start = time.monotonic()
        try:
            for i in range(self.db_changes):
                if self.stop.is_set():
                    return
                delay = start + i * self.seconds / self.db_changes - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                message = f"{self.tag}-{i:05d}"
                with db.session() as session:
                    record_event(session, "bench.replication", message)
                self.db_acked[message] = time.monotonic()
        except Exception as exc:
            self.errors.append(f"database: {exc}")
        finally:
            db.close()

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self.run_files, daemon=True), threading.Thread(target=self.run_db, daemon=True)]


class Arrivals(FileSystemEventHandler):
    """When each file's final name appeared on the standby (rsync writes a temp file, then renames it)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("moved", "created", "closed"):
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        name = os.path.basename(os.fsdecode(raw))
        if name.startswith("f") and name not in self.seen:
            self.seen[name] = time.monotonic()


def _same(path: Path, written: Written) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return len(data) == written.size and hashlib.sha1(data).hexdigest() == written.digest


def steady_run(rl: ReplLab, seconds: float, rate: float, db_changes: int) -> dict[str, Any]:
    src = rl.path(rl.primary, "/home/bench1")
    dst = rl.path(rl.standby, "/home/bench1")
    dst.mkdir(parents=True, exist_ok=True)
    arrivals = Arrivals()
    observer = Observer()
    observer.schedule(arrivals, str(dst), recursive=False)
    observer.start()
    load = Load(src, rl.state_dir(rl.primary), rate, db_changes, seconds, "steady")
    try:
        workers = load.threads()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not set(load.files) <= set(arrivals.seen):
            time.sleep(0.05)
    finally:
        observer.stop()
        observer.join(5)
    lags = sorted(arrivals.seen[n] - w.ack for n, w in load.files.items() if n in arrivals.seen)
    missing = [n for n in load.files if n not in arrivals.seen]
    wrong = [n for n, w in load.files.items() if not _same(dst / n, w)]
    db_have = db_messages(rl.state_dir(rl.standby), "steady-")
    return {
        "files_written": len(load.files),
        "files_missing_after_run": len(missing),
        "files_different_after_run": len(wrong),
        "file_lag_p50_s": round(statistics.median(lags), 4) if lags else None,
        "file_lag_p99_s": round(_quantile(lags, 0.99), 4) if lags else None,
        "file_lag_max_s": round(lags[-1], 4) if lags else None,
        "db_changes_acked": len(load.db_acked),
        "db_changes_missing_after_run": len(set(load.db_acked) - db_have),
        "errors": load.errors,
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def crash_run(rl: ReplLab, seconds: float, rate: float, db_changes: int) -> dict[str, Any]:
    src = rl.path(rl.primary, "/home/bench2")
    dst = rl.path(rl.standby, "/home/bench2")
    load = Load(src, rl.state_dir(rl.primary), rate, db_changes, seconds, "crash")
    workers = load.threads()
    for worker in workers:
        worker.start()
    time.sleep(seconds / 2)
    crash_at = time.monotonic()
    load.stop.set()
    rl.lab.crash(rl.primary)
    rl.forget(rl.primary)
    for worker in workers:
        worker.join(30)
    old = {n: w for n, w in load.files.items() if w.ack < crash_at - LOSS_BOUND_S}
    before = {n: w for n, w in load.files.items() if w.ack < crash_at}
    lost = sorted(n for n, w in old.items() if not _same(dst / n, w))
    lost_any = sorted(n for n, w in before.items() if not _same(dst / n, w))
    acked = {m for m, t in load.db_acked.items() if t < crash_at}
    have = db_messages(rl.state_dir(rl.standby), "crash-")
    return {
        "files_acked_before_crash": len(before),
        "files_acked_beyond_bound": len(old),
        "files_lost": len(lost),
        "files_lost_examples": lost[:5],
        "files_missing_within_bound": len(lost_any) - len(lost),
        "db_changes_acked_before_crash": len(acked),
        "db_changes_lost": len(acked - have),
        "errors": load.errors,
    }


def run_bench(
    state_dir: Path,
    *,
    seconds: float = 30.0,
    rate: float = 100.0,
    db_changes: int = 1000,
    progress: bool = True,
    lab_name: str | None = None,
) -> dict[str, Any]:
    require_root("the replication benchmark")
    console = Console(stderr=True, quiet=not progress)
    name = lab_name or f"rb{os.getpid() % 100000}"
    work = Path(tempfile.mkdtemp(prefix="haoscar-bench-repl-", dir=state_dir if state_dir.is_dir() else None))
    result: dict[str, Any] = {"seconds": seconds, "rate_files_per_s": rate, "db_changes_per_run": db_changes}
    try:
        with console.status("bringing up a lab with two heads") as status:
            lab = Lab.up(default_spec(), name, work)
            rl = ReplLab(lab, repl_spec(default_spec()))
            try:
                rl.setup()
                rl.start(rl.standby, "target")
                rl.start(rl.primary, "source")
                rl.wait_in_sync(60)
                status.update(f"steady run: {rate:g} files/s for {seconds:g} s + {db_changes} database changes")
                steady = steady_run(rl, seconds, rate, db_changes)
                status.update("crash run: the active head crashes half-way")
                crash = crash_run(rl, seconds, rate, db_changes)
            finally:
                rl.stop_all()
        result.update(
            file_lag_p50_s=steady.pop("file_lag_p50_s"),
            file_lag_p99_s=steady.pop("file_lag_p99_s"),
            files_lost=crash["files_lost"],
            db_changes_lost=crash["db_changes_lost"],
            loss_bound_s=LOSS_BOUND_S,
            steady=steady,
            crash=crash,
            floors={"file_lag_p99_s": 1.0, "files_lost": 0, "db_changes_lost": 0},
            baseline_ha_oscar_2_bound_s=300,
        )
    finally:
        with contextlib.suppress(Exception):
            down_lab(name, work)
        shutil.rmtree(work, ignore_errors=True)
    return result
