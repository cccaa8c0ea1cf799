"""What ``haoscar cluster test`` expects of the nodes and how it reads their answers (docs/cluster-test.md).

Pure parts only: the names every node must resolve (from the database), the shell lines each check runs on a node
and the parsers that turn a node's output into a verdict with its reason. The fan-out itself is
``provision.fanout`` (ClusterShell); the Slurm and MPI parts are ``provision.cluster_jobs``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from haoscar.provision.accounts_hosts import host_entries

SHOWN = 3  # mismatches named in one reason; the rest are counted
MARK = "haoscar-cluster-test"  # prefix of every file the /home check writes (so a leftover is recognisable)
LOOKUP_TIMEOUT = 3  # seconds for one getent on a node: a resolver that waits on an absent DNS server is a failure


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


# ------------------------------------------------------------------------------------------- name resolution


@dataclass
class Expected:
    """The name service every node must agree with: each name to its private IP, each IP back to one of its names."""

    forward: dict[str, str] = field(default_factory=dict)
    reverse: dict[str, list[str]] = field(default_factory=dict)

    def add(self, ip: str, names: Iterable[str]) -> None:
        for name in names:
            self.forward[name] = ip
            if name not in self.reverse.setdefault(ip, []):
                self.reverse[ip].append(name)

    def lookups(self) -> list[str]:
        return [*self.forward, *self.reverse]


def expected_names(session: Session) -> Expected:
    """What ``cluster sync`` puts in every host's /etc/hosts, from the database (``provision.accounts_hosts``):
    every head's and node's name and FQDN -> its private IP, and the heads' private alias as ``CLUSTER-head``."""
    expected = Expected()
    for entry in host_entries(session):
        expected.add(entry.ip, [entry.name, entry.fqdn])
    return expected


def resolve_script(expected: Expected) -> str:
    """One line per name and per IP: the key, a tab, what ``getent hosts`` gave (empty: nothing)."""
    keys = " ".join(shlex.quote(key) for key in expected.lookups())
    return (
        f"for k in {keys}; do "
        f'r=$(timeout {LOOKUP_TIMEOUT} getent hosts "$k" | head -n 1); '
        'printf \'%s\\t%s\\n\' "$k" "$r"; done'
    )


def resolve_verdict(expected: Expected, lines: list[str]) -> Verdict:
    """Each name must give the database's IP, each IP one of the database's names for it."""
    answers: dict[str, list[str]] = {}
    for line in lines:
        key, _, found = line.partition("\t")
        answers[key] = found.split()
    problems: list[str] = []
    for name, ip in expected.forward.items():
        got = answers.get(name)
        if not got:
            problems.append(f"{name} does not resolve (the database: {ip})")
        elif got[0] != ip:
            problems.append(f"{name} -> {got[0]} (the database: {ip})")
    for ip, names in expected.reverse.items():
        got = answers.get(ip)
        if not got or len(got) < 2:
            problems.append(f"{ip} has no name (the database: {names[0]})")
        elif not set(got[1:]) & set(names):
            problems.append(f"{ip} -> {got[1]} (the database: {names[0]})")
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        return Verdict(False, "; ".join(problems[:SHOWN]) + more)
    return Verdict(True, f"{len(expected.forward)} names and {len(expected.reverse)} addresses agree with the database")


# ------------------------------------------------------------------------------------------------------ /home


def home_write_script(directory: str, run_id: str, user: str | None) -> str:
    """Write a new random text into a new file named after it in ``directory`` (``user``'s home on the export, as
    that user, or /home as root) and print the file's path: the head then looks for the same path in its exported
    /home. The same line runs on every node; the kernel's random UUID makes each node's file its own."""
    write = 'umask 022; printf "%s\\n" "$1" > "$2" && echo "$2"'
    as_user = "" if user is None else f"runuser -u {shlex.quote(user)} -- "
    return (
        f"u=$(cat /proc/sys/kernel/random/uuid); "
        f'{as_user}sh -c {shlex.quote(write)} sh "$u" {shlex.quote(directory)}/.{MARK}.{run_id}."$u"'
    )


def home_read_script(paths: Iterable[str], user: str | None) -> str:
    """One line per file: its path, a tab, its first line as read on this node (as ``user`` when given)."""
    read = 'for f in "$@"; do printf "%s\\t" "$f"; head -n 1 "$f" 2>&1 || true; done'
    as_user = "" if user is None else f"runuser -u {shlex.quote(user)} -- "
    return f"{as_user}sh -c {shlex.quote(read)} sh " + " ".join(shlex.quote(path) for path in paths)


def written_path(lines: list[str], home: str, run_id: str) -> str | None:
    """The path the node said it wrote, when it is one of this run's under ``home`` (a node is not trusted: the
    head reads and removes this path)."""
    said = [line.strip() for line in lines if line.strip()]
    if len(said) != 1:
        return None
    path = said[0]
    name = path.rsplit("/", 1)[-1]
    inside = path.startswith(home.rstrip("/") + "/") and ".." not in path.split("/")
    ours = re.fullmatch(rf"\.{MARK}\.{re.escape(run_id)}\.[0-9a-f-]{{36}}", name) is not None
    return path if inside and ours else None


# -------------------------------------------------------------------------------------------------------- time

TIME_COMMAND = "date +%s.%N"


def node_clock(lines: list[str]) -> float | None:
    said = [line.strip() for line in lines if line.strip()]
    try:
        return float(said[0]) if len(said) == 1 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Offset:
    """A node's clock against the head's: the node read ``node_time`` while the head's clock was between ``before``
    and ``after`` (the fan-out's window); the offset is taken at the window's middle, give or take half its width."""

    node_time: float
    before: float
    after: float

    @property
    def offset(self) -> float:
        return self.node_time - (self.before + self.after) / 2

    @property
    def error(self) -> float:
        return (self.after - self.before) / 2

    def verdict(self, threshold: float) -> Verdict | None:
        """Pass when the offset is surely within ``threshold``, fail when surely beyond; None: cannot tell yet."""
        said = f"offset {self.offset:+.3f} s (± {self.error:.3f} s)"
        if abs(self.offset) - self.error > threshold:
            return Verdict(False, f"{said}: more than {threshold:g} s from the head's clock")
        if abs(self.offset) + self.error <= threshold:
            return Verdict(True, said)
        return None

    def undecided(self, threshold: float) -> Verdict:
        return Verdict(
            False,
            f"offset {self.offset:+.3f} s (± {self.error:.3f} s): cannot tell whether it is within {threshold:g} s "
            "(the round trip took too long)",
        )
