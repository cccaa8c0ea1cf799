"""Replication in a lab, for tests and the benchmark: both heads' ``haoscar repl run`` daemons inside lab hosts,
their status and events read from the hosts' private directories, and the trees reached from the root namespace
(each host's /home is a directory of the root file system bound into the host, so inotify sees writes made here).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haoscar.commands.cluster_tls import write_lab_tls
from haoscar.keys import generate_key
from haoscar.lab.lab import Lab
from haoscar.replication.state import read_status
from haoscar.spec.models import ClusterSpec

HOST_STATE_DIR = "/var/lib/haoscar"
HOST_SPEC = "/etc/haoscar/cluster.yaml"
HOST_KEY = "/etc/haoscar/ha.key"


def repl_spec(spec: ClusterSpec, **ha_overrides: Any) -> ClusterSpec:
    return spec.model_copy(update={"ha": spec.ha.model_copy(update=ha_overrides)})


@dataclass
class ReplLab:
    lab: Lab
    spec: ClusterSpec
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return self.spec.heads.primary.hostname

    @property
    def standby(self) -> str:
        return self.spec.heads.standby.hostname

    def path(self, host: str, inside: str) -> Path:
        """``inside`` (an absolute path in the host) as seen from the root namespace."""
        return self.lab.host_dir(host) / inside.lstrip("/")

    def state_dir(self, host: str) -> Path:
        return self.path(host, HOST_STATE_DIR)

    def setup(self, keys_differ: bool = False) -> None:
        """The spec and the HA key on both heads (one key for both unless ``keys_differ``)."""
        text = yaml.safe_dump(self.spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
        first = self.path(self.primary, HOST_KEY)
        for host in (self.primary, self.standby):
            self.path(host, HOST_SPEC).parent.mkdir(parents=True, exist_ok=True)
            self.path(host, HOST_SPEC).write_text(text)
        generate_key(first, force=True)
        other = self.path(self.standby, HOST_KEY)
        if keys_differ:
            generate_key(other, force=True)
        else:
            other.write_bytes(first.read_bytes())
            other.chmod(0o600)
        # The cluster CA and each head's certificate, as `install complete` writes them: replication is mutual TLS.
        write_lab_tls(self.spec, self.lab.host_dir)

    def start(self, host: str, role: str, catch_up: bool = False) -> subprocess.Popen[bytes]:
        log = self.state_dir(host) / "repl.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "haoscar", "--state-dir", HOST_STATE_DIR, "repl", "run", "--node", host,
                "--spec", HOST_SPEC, "--role", role, *(["--catch-up"] if catch_up else [])]  # fmt: skip
        with open(log, "ab") as out:
            proc = self.lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.procs[host] = proc
        return proc

    def stop(self, host: str, timeout: float = 10.0) -> None:
        proc = self.procs.pop(host, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def forget(self, host: str) -> None:
        """After a crash of ``host``: its daemon died with it; reap it."""
        proc = self.procs.pop(host, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def stop_all(self) -> None:
        for host in list(self.procs):
            self.stop(host)

    def status(self, host: str) -> dict[str, Any] | None:
        current = read_status(self.state_dir(host) / "replication")
        return current.to_dict() if current is not None else None

    def wait_for(self, host: str, timeout: float = 30.0, **want: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status(host)
            if last is not None and all(last.get(k) == v for k, v in want.items()):
                return last
            time.sleep(0.05)
        raise TimeoutError(f"{host}: replication status never had {want} within {timeout:g} s; last {last}\n"
                           f"{self.logs(host)}")  # fmt: skip

    def wait_until(self, host: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status(host)
            if last is not None and check(last):
                return last
            time.sleep(0.05)
        raise TimeoutError(f"{host}: replication status never passed the check; last {last}\n{self.logs(host)}")

    def wait_in_sync(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until the source confirms a full sync (database copied and a full file pass done)."""
        return self.wait_for(self.primary, timeout, role="source", standby_stale=False, db_connected=True)

    def events(self, host: str) -> list[dict[str, Any]]:
        path = self.state_dir(host) / "ha" / "events.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_event(self, host: str, kind: str, timeout: float = 15.0, **data: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(host):
                if event["kind"] == kind and all(event["data"].get(k) == v for k, v in data.items()):
                    return event
            time.sleep(0.05)
        kinds = [e["kind"] for e in self.events(host)]
        raise TimeoutError(f"{host}: no {kind} event {data} within {timeout:g} s; saw {kinds}\n{self.logs(host)}")

    def logs(self, host: str, tail: int = 30) -> str:
        try:
            lines = (self.state_dir(host) / "repl.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no replication log on {host})"
        return f"--- repl@{host} ---\n" + "\n".join(lines[-tail:])


def db_messages(state_dir: Path, prefix: str) -> set[str]:
    """Messages of events starting with ``prefix`` in a head's database, read as SQLite sees it (WAL included)."""
    conn = sqlite3.connect(f"file:{state_dir / 'haoscar.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT message FROM events WHERE message LIKE ?", (prefix + "%",)).fetchall()
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()
    return {str(r[0]) for r in rows}
