"""Image transfers to lab hosts, timed on the client side alike for haoscar and rsync (``bench install``,
``bench install-fanout``).

haoscar's side is the installer's own fetch path: ``install.sh`` sourced with ``HAOSCAR_LIB=1`` under busybox sh
(the tools it has in the initramfs), its ``network`` (the node's plan by MAC, with its install token) and its
``pull_image`` (the boot server's tar stream unpacked and hashed at once, checked against the plan's SHA-256, with
its progress reports to the head). rsync's side is what SystemImager's nodes ran: ``rsync -aH --numeric-ids`` from
an rsync daemon on the head (``rsync://HEAD/image/``). Every client script says ``ready`` once it is set up, waits
for one line on stdin, transfers, and says ``done``: all hosts start on one signal and each host's time runs from
that signal to its own ``done``. What arrived is then compared file by file with the source tree (``manifest``).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import stat
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.provision.installer_build import SCRIPTS_DIR

INSTALL_SH = SCRIPTS_DIR / "install.sh"
RSYNC_PORT = 873
RSYNC_ARGS = "-aH --numeric-ids"  # hard links and numeric owners, as the tar stream keeps them

TIMES = re.compile(r"(\d+)m([\d.]+)s (\d+)m([\d.]+)s")  # a line of the shell's `times`: user, system
Entry = tuple[str, int, int, str]  # kind, mode, size, sha256 or link target


@dataclass(frozen=True)
class TreeFacts:
    files: int
    bytes: int
    small_files: int
    large_files: int
    symlinks: int
    directories: int

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "mb": round(self.bytes / 1e6, 2)}


def synthetic_tree(root: Path, *, small: int = 1600, large: int = 4, large_mib: int = 4, seed: int = 15) -> TreeFacts:
    """A root tree shaped like a small system image: many small files (0.2-12 KB, like /etc and /usr/share), a few
    large ones (like a kernel, an initrd, a library), symlinks; incompressible content, the same for a seed."""
    rng = random.Random(seed)
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("NAME=haoscar-bench\n")
    small_bytes, dirs = 0, 2
    for i in range(small):
        directory = root / "usr/share/bench" / f"d{i // 40:03d}"
        if i % 40 == 0:
            directory.mkdir(parents=True)
            dirs += 1
        data = rng.randbytes(rng.randint(200, 12000))
        (directory / f"f{i:05d}").write_bytes(data)
        small_bytes += len(data)
    (root / "boot").mkdir()
    for i in range(large):
        (root / "boot" / f"blob{i}").write_bytes(rng.randbytes(large_mib << 20))
    links = min(small, 50)
    for i in range(links):
        (root / "etc" / f"link{i:02d}").symlink_to(f"../usr/share/bench/d{i // 40:03d}/f{i:05d}")
    total = small_bytes + large * (large_mib << 20) + len("NAME=haoscar-bench\n")
    return TreeFacts(small + large + 1, total, small, large, links, dirs + 1)


def manifest(root: Path) -> dict[str, Entry]:
    """Every entry under ``root``: kind, mode, size and content hash (files) or target (links); owners and times
    are left out (both transfers keep them; the file contents are what a node needs)."""
    found: dict[str, Entry] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), 0, "")
            elif stat.S_ISREG(st.st_mode):
                with path.open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                found[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, digest)
            else:  # a device node or fifo: its kind and numbers, never opened
                found[rel] = ("special", st.st_mode, 0, str(st.st_rdev))
    return found


def differences(expected: Mapping[str, Entry], target: Path) -> list[str]:
    """What ``target`` lacks or has wrong against ``expected`` (at most 5 named); empty when complete."""
    if not target.is_dir():
        return [f"{target} does not exist"]
    got = manifest(target)
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    named = [f"missing {k}" for k in missing] + [f"differs {k}" for k in wrong] + [f"extra {k}" for k in extra]
    return named[:5] + ([f"... {len(named) - 5} more"] if len(named) > 5 else [])


def busybox_path(directory: Path) -> str:
    """A directory of busybox applet links first on PATH: the installer runs with the tools it has at boot."""
    if not directory.is_dir():
        directory.mkdir(parents=True)
        listed = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in listed:
            (directory / applet).symlink_to("/bin/busybox")
    return f"{directory}:/usr/sbin:/usr/bin:/sbin:/bin"


def installer_script(server: str, mac: str, target: Path, *, token: str | None = None) -> str:
    """busybox sh: the node's token from its iPXE script asked for from its own address (unless ``token`` is
    given), its plan (``network``), then on the signal the image through ``pull_image``."""
    q = shlex.quote
    get_token = (
        f"TOKEN={q(token)}"
        if token is not None
        else f"TOKEN=$(wget -q -O - {q(server)}/boot/{mac}.ipxe | tr ' ' '\\n' | sed -n 's/^haoscar.token=//p')"
    )
    return "\n".join(
        [
            "set -u",
            get_token,
            '[ -n "$TOKEN" ] || { echo "no install token in the iPXE script" >&2; exit 3; }',
            f'export HAOSCAR_SERVER={q(server)} HAOSCAR_MAC={mac} HAOSCAR_TOKEN="$TOKEN" HAOSCAR_LIB=1',
            f". {q(str(INSTALL_SH))}",
            f"TARGET={q(str(target))}",
            'W=$(mktemp -d /tmp/haoscar-fanout.XXXXXX) && mkdir -p "$TARGET" || exit 3',
            "trap 'rm -rf \"$W\"' EXIT",
            "network",
            "echo ready",
            "read go",
            "pull_image",
            "echo done",
            "times",  # the CPU this node spent, its tools included (see Pull.cpu_s)
        ]
    )


def rsync_script(url: str, target: Path) -> str:
    q = shlex.quote
    pull = f"rsync {RSYNC_ARGS} {q(url)} {q(str(target))}/ && echo done && times"
    return f"mkdir -p {q(str(target))} || exit 3\necho ready\nread go\n{pull}\n"


@dataclass
class Pull:
    host: str
    seconds: float | None = None
    ready: bool = False
    output: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def cpu_s(self) -> float | None:
        """User + system CPU of the script and its waited-for children, from the shell's ``times`` (the two last
        lines it printed: the shell's own, then its children's)."""
        found = [TIMES.fullmatch(line) for line in self.output]
        pairs = [m for m in found if m is not None][-2:]
        if len(pairs) != 2:
            return None
        return sum(int(m[i]) * 60 + float(m[i + 1]) for m in pairs for i in (1, 3))


def _follow(proc: subprocess.Popen[str], pull: Pull, ready: threading.Event, t0: list[float]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        word = line.strip()
        if word == "ready":
            pull.ready = True
            ready.set()
        elif word == "done" and t0:
            pull.seconds = time.monotonic() - t0[0]
        else:
            pull.output.append(word)
    ready.set()  # gone without "ready": the main thread must not wait for it


def run_together(lab: Lab, scripts: Mapping[str, str], *, timeout: float = 600.0) -> tuple[dict[str, Pull], float]:
    """Run each host's script; once every one is ready, signal all at once. Returns each host's pull and the wall
    time from the signal to the last host's end."""
    procs: dict[str, subprocess.Popen[str]] = {}
    pulls = {host: Pull(host) for host in scripts}
    events = {host: threading.Event() for host in scripts}
    t0: list[float] = []
    threads: dict[str, threading.Thread] = {}
    try:
        for host, script in scripts.items():
            procs[host] = lab.popen(
                host, ["busybox", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            threads[host] = threading.Thread(target=_follow, args=(procs[host], pulls[host], events[host], t0))
            threads[host].start()
        deadline = time.monotonic() + 120.0
        for host, event in events.items():
            if not event.wait(max(0.0, deadline - time.monotonic())) or not pulls[host].ready:
                said = " | ".join(pulls[host].output[-5:])  # the installer logs on stdout ("haoscar-install: ...")
                raise UserError(f"{host} did not get ready to transfer: {_stderr(procs[host])} {said}".strip())
        t0.append(time.monotonic())
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        end = t0[0] + timeout
        for host, proc in procs.items():
            try:
                code = proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pulls[host].error = f"still transferring after {timeout:g} s"
                continue
            threads[host].join(5)  # its last line ("done") is read by the thread: wait for it
            if code != 0 or pulls[host].seconds is None:
                pulls[host].error = f"exit {code}: {_stderr(proc)}"
        wall = time.monotonic() - t0[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for thread in threads.values():
            thread.join(5)
    return pulls, wall


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.kill()
    assert proc.stderr is not None
    try:
        return proc.stderr.read().strip()[-400:]
    except ValueError:
        return ""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU time, its waited-for children's): utime + stime, cutime + cstime."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


class RsyncDaemon:
    """An rsync daemon in the head host serving ``root`` read-only as module ``image`` (stopped by pid)."""

    def __init__(self, lab: Lab, host: str, address: str, root: Path, work: Path) -> None:
        conf = work / "rsyncd.conf"
        conf.write_text(
            f"pid file = {work}/rsyncd.pid\nuse chroot = no\nmax connections = 0\n[image]\n  path = {root}\n"
            "  read only = yes\n  uid = root\n  gid = root\n  numeric ids = yes\n"
        )
        self.url = f"rsync://{address}:{RSYNC_PORT}/image/"
        self.proc = lab.popen(
            host,
            ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--address={address}", f"--port={RSYNC_PORT}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, lab: Lab, client: str) -> None:
        base = self.url.removesuffix("image/")
        wait = f"for i in $(seq 50); do rsync {shlex.quote(base)} >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1"
        if lab.exec(client, ["sh", "-c", wait], timeout=30, check=False).returncode != 0:
            raise UserError(f"the rsync daemon at {base} did not answer {client}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def summary(pulls: Mapping[str, Pull], wall: float, nbytes: int) -> dict[str, Any]:
    """Client-side figures of one transfer round: aggregate MB/s over the wall time, slowest and median node."""
    times = sorted(p.seconds for p in pulls.values() if p.seconds is not None and not p.error)
    ok = len(times)
    cpu = [p.cpu_s for p in pulls.values() if p.cpu_s is not None]
    return {
        "clients_cpu_s": round(sum(cpu), 2) if cpu else None,
        "nodes_done": ok,
        "wall_s": round(wall, 3),
        "aggregate_mb_per_s": round(ok * nbytes / 1e6 / wall, 2) if wall > 0 else None,
        "slowest_node_s": round(times[-1], 3) if times else None,
        "median_node_s": round(times[len(times) // 2], 3) if times else None,
        "fastest_node_s": round(times[0], 3) if times else None,
        "errors": {host: p.error for host, p in pulls.items() if p.error},
    }
