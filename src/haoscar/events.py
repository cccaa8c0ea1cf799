"""HA events: every transition and fault is one ``Event``, logged, stored and passed to alert hooks.

The bus is part of the shared kernel: it knows sinks (callables), not the spec or the alert hooks. The daemons
that want alerts add them as one more sink (``haoscar.ha.alerts.daemon_bus``).

``EventBus.emit`` runs on the daemon's event loop, so it only appends to memory and hands the event to worker
threads; a slow disk, a blocked stderr pipe or a webhook that hangs can never delay a heartbeat. Each sink has its
own thread and queue, so a slow alert hook cannot delay the log or the store either.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
# syslog priorities, which journald reads from a "<N>" prefix on a service's stderr lines.
SYSLOG_PRIORITY: dict[str, int] = {"info": 6, "warning": 4, "critical": 2}

Sink = Callable[["Event"], None]
WORKER_STACK = 1024 * 1024
STORE_MAX_BYTES = 16 * 1024 * 1024  # events.jsonl is rotated at this size ...
STORE_FILES = 5  # ... keeping this many files (the live one included): at most 80 MiB on disk
COALESCE_WINDOW_S = 60.0
COALESCE_BURST = 100
COALESCE_SOURCES = 16
# Event kinds (last dotted part) that anybody who can send a packet can cause at will: coalesced from the first.
FLOOD_SUFFIXES = frozenset({"rejected", "auth_failed", "dropped", "forged", "replayed"})


@dataclass(frozen=True)
class Event:
    kind: str
    node: str
    message: str
    severity: Severity = "info"
    data: dict[str, Any] = field(default_factory=dict)
    wall: float = field(default_factory=time.time)
    mono: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        severity = raw.get("severity", "info")
        if severity not in SEVERITY_RANK:
            severity = "info"
        return cls(
            kind=str(raw["kind"]),
            node=str(raw["node"]),
            message=str(raw.get("message", "")),
            severity=severity,
            data=dict(raw.get("data") or {}),
            wall=float(raw.get("wall", 0.0)),
            mono=float(raw.get("mono", 0.0)),
        )


def at_least(event: Event, minimum: str) -> bool:
    return SEVERITY_RANK[event.severity] >= SEVERITY_RANK.get(minimum, 0)


def format_log_line(event: Event) -> str:
    """One journald-friendly line: ``<4>haoscar-ha[head1]: resource.failed dhcp: monitor failed key=value``."""
    extras = " ".join(f"{key}={_short(value)}" for key, value in sorted(event.data.items()))
    line = f"<{SYSLOG_PRIORITY[event.severity]}>haoscar-ha[{event.node}]: {event.kind} {event.message}"
    if extras:
        line += f" {extras}"
    return line.replace("\n", " ")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


class _Worker:
    """A daemon thread that feeds events to one sink; the sink's failures are reported, never raised."""

    def __init__(self, name: str, sink: Sink, on_error: Callable[[str], None]) -> None:
        self.name = name
        self._sink = sink
        self._on_error = on_error
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"haoscar-events-{name}", daemon=True)
        # A small stack: with ha.lock_memory the whole stack of every thread is locked into RAM (8 MiB by default).
        previous = threading.stack_size(WORKER_STACK)
        try:
            self._thread.start()
        finally:
            threading.stack_size(previous)

    def put(self, event: Event) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self._sink(event)
            except Exception as exc:  # a sink must never take the bus down
                self._on_error(f"event sink {self.name} failed on {event.kind}: {exc}")
            with self._lock:
                self._pending -= 1
                drained = self._pending == 0
            if drained:
                self._when_drained()
                with self._lock:
                    if self._pending == 0:
                        self._idle.set()

    def _when_drained(self) -> None:
        """A sink with an ``idle`` method (the store's batched fsync) is told that its queue ran empty."""
        idle = getattr(self._sink, "idle", None)
        if idle is None:
            return
        try:
            idle()
        except Exception as exc:
            self._on_error(f"event sink {self.name} failed when idle: {exc}")

    def flush(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class LogSink:
    """One line per event on a text stream (stderr by default, which journald collects from a unit)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def __call__(self, event: Event) -> None:
        stream = self._stream or sys.stderr
        stream.write(format_log_line(event) + "\n")
        stream.flush()


class JsonlStore:
    """Events appended as JSON lines, so ``haoscar ha events`` and post-mortems see every one (a flood as the
    ``Coalescer``'s summaries).

    A critical event is fsync'd before the next one is handled; info and warning lines are fsync'd once the
    store's queue runs empty (``idle``), so a burst costs one fsync, not one per event. The file is rotated by
    size, logrotate-style without a copy: ``events.jsonl`` -> ``.1`` -> ... -> ``.{files-1}``, the oldest dropped,
    so a flood costs at most ``max_bytes * files`` of disk (issue 10, finding 6)."""

    def __init__(self, path: Path, max_bytes: int = STORE_MAX_BYTES, files: int = STORE_FILES) -> None:
        self.path = path
        self.max_bytes = max(1024, max_bytes)
        self.files = max(1, files)
        self._dirty = False

    def __call__(self, event: Event) -> None:
        line = (event.to_json() + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                self._rotate()
                fd = self._open()
            os.write(fd, line)
            if event.severity == "critical":
                os.fsync(fd)
                self._dirty = False
            else:
                self._dirty = True
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)

    def idle(self) -> None:
        """The queue ran empty: make what was written durable (fsync syncs the file, whichever fd wrote)."""
        if not self._dirty:
            return
        self._dirty = False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        self.idle()
        if self.files == 1:
            self.path.unlink(missing_ok=True)
            return
        for n in range(self.files - 1, 0, -1):
            older = self.rotated(n - 1)
            if older.exists():
                os.replace(older, self.rotated(n))
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the renames survive a crash, so no event is stored twice or under the wrong name
        finally:
            os.close(dfd)

    def rotated(self, n: int) -> Path:
        """The n-th file: 0 is the live one, 1 the last rotated, ``files - 1`` the oldest kept."""
        return self.path if n == 0 else self.path.with_name(f"{self.path.name}.{n}")

    def read(self, n: int | None = None) -> list[Event]:
        """The last ``n`` stored events (all when None), the rotated files included, oldest first; a torn line
        from a crash is skipped."""
        events: list[Event] = []
        for index in range(self.files):
            try:
                lines = self.rotated(index).read_text().splitlines()
            except FileNotFoundError:
                continue
            chunk = []
            for line in lines:
                try:
                    chunk.append(Event.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue
            events[:0] = chunk
            if n and len(events) >= n:
                break
        return events[-n:] if n else events


class Coalescer:
    """Bounds what a flood of one kind of event costs (issue 10, finding 6: every rejected connection an fsync'd
    event and an alert). Per kind and source (``data["source"]``, ``address``, ``peer`` or ``reason``), the first
    ``burst`` events of a window pass; the rest are counted, and when the window ends one summary event "N more
    KIND from SOURCE in the last Ws" stands for them (same kind, the worst severity seen), as long as the flood
    lasts. Kinds a stranger can cause at will (``FLOOD_SUFFIXES``: rejected connections, failed authentications,
    dropped packets) get a burst of 1; every other kind ``burst`` (a backstop: no normal operation repeats one
    kind that often). At most ``max_sources`` sources per kind are told apart in a window; the others share the
    source "*", so spoofed addresses cannot multiply the lines either."""

    def __init__(
        self,
        window: float = COALESCE_WINDOW_S,
        burst: int = COALESCE_BURST,
        max_sources: int = COALESCE_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Window] = {}

    @staticmethod
    def source_of(event: Event) -> str:
        for key in ("source", "address", "peer", "reason"):
            if key in event.data:
                return str(event.data[key])[:128]
        return ""

    def limit_for(self, kind: str) -> int:
        return 1 if kind.rsplit(".", 1)[-1] in FLOOD_SUFFIXES else self.burst

    def admit(self, event: Event) -> tuple[bool, list[Event]]:
        """Whether ``event`` goes to the sinks, and the summaries of windows that ended before it."""
        now = self._clock()
        with self._lock:
            summaries = self._expire(now)
            key = (event.kind, self.source_of(event))
            if key not in self._open and sum(1 for k in self._open if k[0] == event.kind) >= self.max_sources:
                key = (event.kind, "*")
            window = self._open.get(key)
            if window is None:
                self._open[key] = window = _Window(now, now + self.window, event.node)
            if window.passed < self.limit_for(event.kind):
                window.passed += 1
                return True, summaries
            window.suppressed += 1
            if SEVERITY_RANK[event.severity] > SEVERITY_RANK[window.severity]:
                window.severity = event.severity
            return False, summaries

    def expire(self, everything: bool = False) -> list[Event]:
        """Summaries of the windows that ended (all open ones when ``everything``, e.g. at shutdown)."""
        with self._lock:
            return self._expire(math.inf if everything else self._clock())

    def next_deadline(self) -> float | None:
        with self._lock:
            return min((w.ends for w in self._open.values() if w.suppressed), default=None)

    def _expire(self, now: float) -> list[Event]:
        summaries = []
        for key, window in list(self._open.items()):
            if window.ends > now:
                continue
            del self._open[key]
            if not window.suppressed:
                continue
            end = min(window.ends, self._clock())
            where = f" from {key[1]}" if key[1] else ""
            summaries.append(
                Event(
                    kind=key[0],
                    node=window.node,
                    message=f"{window.suppressed} more {key[0]}{where} in the last {end - window.start:.0f}s",
                    severity=window.severity,
                    data={"coalesced": window.suppressed, "source": key[1] or "-", "window_s": end - window.start},
                )
            )
            if math.isfinite(now) and window.ends + self.window > now:
                # The flood may go on: the next window suppresses from its start, one summary per window.
                self._open[key] = _Window(window.ends, window.ends + self.window, window.node, passed=1 << 30)
        return summaries


@dataclass
class _Window:
    start: float
    ends: float
    node: str
    passed: int = 0
    suppressed: int = 0
    severity: Severity = "info"


def events_path(state_dir: Path) -> Path:
    return state_dir / "ha" / "events.jsonl"


class EventBus:
    """Fan-out of events to subscribers (called on the emitting thread) and sinks (each on its own thread)."""

    def __init__(
        self,
        node: str,
        keep: int = 1000,
        error_stream: IO[str] | None = None,
        coalescer: Coalescer | None = None,
    ) -> None:
        self.node = node
        self._recent: deque[Event] = deque(maxlen=keep)
        self._subscribers: list[Callable[[Event], None]] = []
        self._workers: list[_Worker] = []
        self._error_stream = error_stream
        self.sink_errors = 0
        # Subscribers and ``recent`` see every event; the sinks (log, store, alerts) see a flood coalesced.
        self.coalescer = coalescer if coalescer is not None else Coalescer()
        self._sweep_lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._closing = threading.Event()

    # -- wiring ---------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, node: str, state_dir: Path, log_stream: IO[str] | None = None) -> EventBus:
        """A daemon's bus: a stderr log and the JSON-lines store under the state directory."""
        bus = cls(node, error_stream=log_stream)
        bus.add_sink("log", LogSink(log_stream))
        bus.add_sink("store", JsonlStore(events_path(state_dir)))
        return bus

    def add_sink(self, name: str, sink: Sink) -> None:
        self._workers.append(_Worker(name, sink, self.log_error))

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """``callback`` runs synchronously inside ``emit``; it must be quick (e.g. wake an asyncio.Event)."""
        self._subscribers.append(callback)

    # -- use --------------------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        try:
            self._recent.append(event)
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception as exc:
                    self.log_error(f"event subscriber failed on {event.kind}: {exc}")
            forward, summaries = self.coalescer.admit(event)
            self._to_sinks([*summaries, event] if forward else summaries)
            if not forward:
                self._ensure_sweeper()
        except Exception as exc:  # emit is called from error paths; it must never add an error of its own
            self.log_error(f"could not emit {event.kind}: {exc}")

    def _to_sinks(self, events: list[Event]) -> None:
        for event in events:
            for worker in list(self._workers):
                worker.put(event)

    def _ensure_sweeper(self) -> None:
        """A thread that writes each coalesced window's summary when it ends, even if the flood stopped."""
        with self._sweep_lock:
            if self._sweeper is not None or self._closing.is_set():
                return
            self._sweeper = threading.Thread(target=self._sweep, name="haoscar-events-sweep", daemon=True)
            previous = threading.stack_size(WORKER_STACK)
            try:
                self._sweeper.start()
            finally:
                threading.stack_size(previous)

    def _sweep(self) -> None:
        while True:
            with self._sweep_lock:
                deadline = self.coalescer.next_deadline()
                if deadline is None or self._closing.is_set():
                    self._sweeper = None
                    return
            if self._closing.wait(max(0.0, deadline - time.monotonic()) + 0.01):
                continue
            try:
                self._to_sinks(self.coalescer.expire())
            except Exception as exc:
                self.log_error(f"could not write coalesced events: {exc}")

    def event(self, kind: str, message: str, severity: Severity = "info", /, **data: Any) -> Event:
        """Build and emit an event of this bus's node in one call."""
        event = Event(kind=kind, node=self.node, message=message, severity=severity, data=data)
        self.emit(event)
        return event

    def recent(self, n: int = 50) -> list[Event]:
        if n <= 0:
            return []
        return list(self._recent)[-n:]

    def log_error(self, message: str) -> None:
        """Problems of the event machinery itself: logged as one line, never turned into events (no loops)."""
        self.sink_errors += 1
        try:
            stream = self._error_stream or sys.stderr
            stream.write(f"<4>haoscar-ha[{self.node}]: events.error {message}\n")
            stream.flush()
        except Exception:
            pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sink has handled every event emitted so far (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        return all(worker.flush(max(0.0, deadline - time.monotonic())) for worker in self._workers)

    def close(self, timeout: float = 10.0) -> None:
        """Write the summaries of the open coalescing windows, drain every sink, stop the threads."""
        self._closing.set()
        self._to_sinks(self.coalescer.expire(everything=True))
        self.flush(timeout)
        for worker in self._workers:
            worker.close(1.0)
        self._workers.clear()
