"""HA events: every transition and fault is one ``Event``, logged, stored and passed to alert hooks.

The bus is part of the shared kernel: it knows sinks (callables), not the spec or the alert hooks. The daemons
that want alerts add them as one more sink (``haoscar.ha.alerts.daemon_bus``).

``EventBus.emit`` runs on the daemon's event loop, so it only appends to memory and hands the event to worker
threads; a slow disk, a blocked stderr pipe or a webhook that hangs can never delay a heartbeat. Each sink has its
own thread and queue, so a slow alert hook cannot delay the log or the store either.
"""

from __future__ import annotations

import json
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
                if self._pending == 0:
                    self._idle.set()

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
    """Events appended as JSON lines and fsync'd, so ``haoscar ha events`` and post-mortems see every one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: Event) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (event.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, n: int | None = None) -> list[Event]:
        """The last ``n`` stored events (all when None); a torn last line from a crash is skipped."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(Event.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return events[-n:] if n else events


def events_path(state_dir: Path) -> Path:
    return state_dir / "ha" / "events.jsonl"


class EventBus:
    """Fan-out of events to subscribers (called on the emitting thread) and sinks (each on its own thread)."""

    def __init__(self, node: str, keep: int = 1000, error_stream: IO[str] | None = None) -> None:
        self.node = node
        self._recent: deque[Event] = deque(maxlen=keep)
        self._subscribers: list[Callable[[Event], None]] = []
        self._workers: list[_Worker] = []
        self._error_stream = error_stream
        self.sink_errors = 0

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
            for worker in self._workers:
                worker.put(event)
        except Exception as exc:  # emit is called from error paths; it must never add an error of its own
            self.log_error(f"could not emit {event.kind}: {exc}")

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
        self.flush(timeout)
        for worker in self._workers:
            worker.close(1.0)
        self._workers.clear()
