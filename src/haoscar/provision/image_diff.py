"""What differs between two image trees, read from an rsync dry run's itemized changes.

rsync already compares everything an image carries (content by size and time, modes, owners, ACLs, xattrs, links),
so a dry run of "make A look like B" lists exactly the paths that were added, removed or changed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.errors import UserError


@dataclass(frozen=True)
class TreeDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def parse_itemized(output: str) -> TreeDiff:
    """Classify ``--out-format='%i|%n'`` lines: ``*deleting`` is removed, ``+++++++++`` is new, any other
    attribute letter is a change. A directory whose only change is its time is left out: it merely had an entry
    added or removed, which is listed on its own."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for line in output.splitlines():
        flags, sep, name = line.partition("|")
        if not sep or not name:
            continue
        if flags.startswith("*deleting"):
            removed.append(name)
            continue
        attrs = flags[2:]
        if attrs.startswith("+++++++++"):
            added.append(name)
            continue
        letters = {c for c in attrs if c not in ". "}
        if flags[1:2] == "d" and letters <= {"t", "T"}:
            continue
        if letters or flags[0] in "<>":
            changed.append(name)
    return TreeDiff(sorted(added), sorted(removed), sorted(changed))


def diff_trees(old: Path, new: Path) -> TreeDiff:
    """Paths added, removed and changed going from ``old`` to ``new`` (two image roots)."""
    for root in (old, new):
        if not root.is_dir():
            raise UserError(f"{root} is not an image tree")
    argv = [
        "rsync",
        "--dry-run",
        "-aHAX",
        "--numeric-ids",
        "--delete",
        "--out-format=%i|%n",
        f"{new}/",
        f"{old}/",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"comparing {old} with {new} failed: {result.stderr.strip()}")
    return parse_itemized(result.stdout)
