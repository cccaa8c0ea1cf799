"""Raw bench results, kept: each bench's JSON with the facts of the machine it ran on, one file per run.

A file is ``DIR/<bench>-<UTC time>.json`` (``docs/bench-results/`` by default) holding ``{"bench", "saved_at",
"note", "machine", "result"}``. ``note`` says when a run is not a full one (a short run that only proves the bench
works, a busy machine): the table generator (``haoscar.scenarios.bench.table``) prints it beside the numbers.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import haoscar
from haoscar.errors import UserError
from haoscar.scenarios.bench.shipped import git_commit

DEFAULT_DIR = Path("docs/bench-results")
NAME = re.compile(r"^(?P<bench>[a-z0-9-]+)-(?P<stamp>\d{8}T\d{6}Z)\.json$")
# The programs whose version a result depends on, and the flag that prints it.
TOOLS = {"keepalived": "--version", "dnsmasq": "--version", "rsync": "--version", "nft": "--version"}


def tool_version(program: str, flag: str = "--version") -> str | None:
    """The first line ``program flag`` prints (keepalived prints it on stderr), or None when it is not installed."""
    if shutil.which(program) is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([program, flag], check=False, capture_output=True, text=True, timeout=10)
        for line in (done.stdout + done.stderr).splitlines():
            if line.strip():
                return line.strip()
    return None


def machine_facts() -> dict[str, Any]:
    """Cores, kernel, Python, the versions of haoscar and the peers' programs, the commit and the load."""
    uname = platform.uname()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "os": _os_release(),
        "python": sys.version.split()[0],
        "haoscar": haoscar.__version__,
        "git_commit": git_commit(),
        "tools": {program: tool_version(program, flag) for program, flag in TOOLS.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _os_release() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return None


def result_name(bench: str, when: datetime.datetime) -> str:
    if not re.fullmatch(r"[a-z0-9-]+", bench):
        raise UserError(f"bench name {bench!r} must be lower-case letters, digits and dashes")
    return f"{bench}-{when.astimezone(datetime.UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def save_result(
    bench: str,
    result: dict[str, Any],
    out_dir: Path = DEFAULT_DIR,
    *,
    note: str | None = None,
    machine: dict[str, Any] | None = None,
    when: datetime.datetime | None = None,
) -> Path:
    """Write one run's JSON with the machine's facts; returns the file. Never overwrites an earlier file."""
    when = when or datetime.datetime.now(datetime.UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / result_name(bench, when)
    doc = {
        "bench": bench,
        "saved_at": when.astimezone(datetime.UTC).isoformat(timespec="seconds"),
        "note": note,
        "machine": machine if machine is not None else machine_facts(),
        "result": result,
    }
    with open(path, "x") as handle:  # "x": two runs in the same second must not overwrite each other
        json.dump(doc, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return path


def newest_results(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The newest saved file of each bench in ``directory`` (by the UTC time in its name), read."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory of bench results; run a bench with --save first")
    newest: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        match = NAME.match(path.name)
        if match is None:
            continue
        bench = match["bench"]
        if bench not in newest or NAME.match(newest[bench].name)["stamp"] < match["stamp"]:  # type: ignore[index]
            newest[bench] = path
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for bench, path in sorted(newest.items()):
        try:
            out[bench] = (path, json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not a bench result file ({exc}); move it out of {directory}") from None
    return out
