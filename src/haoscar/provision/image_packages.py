"""Packages of an image and of the nodes installed from it (OSCAR's *Select/Configure Packages*): the pure part.

The names a user gives, the apt command lines run in an image's chroot and on the nodes, and how to read apt's and
dpkg's answers. The effects (the chroot, the new image version) are in ``provision.image_packages_chroot``; the
command that also reaches the running nodes is ``commands.packages``.

Why nodes get ``.deb`` files and not an apt mirror: compute nodes usually have no route to the internet, and the
head may not have one either when it matters. The files apt resolved in the image's chroot (the packages and
whichever of their dependencies the image lacked) are kept with the image version that installed them and copied
to the nodes, which install them with apt (checked first to need nothing else). A node installed from the same image has
the same packages as the chroot had, so the same files satisfy it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from haoscar.errors import FieldError
from haoscar.spec.models import DEB_PACKAGE

_DEB = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+)_[^_/]+_[a-z0-9-]+\.deb$")

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
# Recommends are left out on both sides: a node installs only the files the chroot downloaded, and a recommended
# package that is not among them could not be installed offline.
APT_INSTALL_FLAGS = ("-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold")
# What apt-cache writes by default (its binary caches); empty names make it read the lists and write nothing, so it
# can answer from a stored (read-only) version.
APT_NO_CACHE = ("-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=")
NODE_DIR = "/var/lib/haoscar/pkg"
POLICY_RC_D = "#!/bin/sh\n# haoscar: no service starts inside an image's chroot\nexit 101\n"


def package_problem(name: str) -> str | None:
    """Why ``name`` is not a Debian package name, or None."""
    if not name:
        return "an empty package name"
    if DEB_PACKAGE.match(name):
        return None
    return f"{name!r} is not a Debian package name (lowercase letters, digits, + - and ., e.g. htop or slurmd)"


def check_packages(field: str, names: Sequence[str]) -> list[str]:
    """The names, each once, in order; a FieldError naming ``field`` for an empty list or a bad name."""
    if not names:
        raise FieldError(field, "is empty: name at least one package, e.g. hello", sep=": ")
    bad = [problem for problem in map(package_problem, names) if problem is not None]
    if bad:
        raise FieldError(field, "; ".join(bad), sep=": ")
    return list(dict.fromkeys(names))


def split_names(text: str) -> list[str]:
    """Names written comma- or space-separated (``htop,slurmd`` or ``htop slurmd``)."""
    return [word for word in text.replace(",", " ").split() if word]


# ------------------------------------------------------------------------------------------------- reading apt


def installed_packages(status_text: str) -> set[str]:
    """The packages dpkg's status file (``/var/lib/dpkg/status``) lists as installed."""
    installed: set[str] = set()
    name = ""
    for line in [*status_text.splitlines(), ""]:
        if line.startswith("Package:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Status:") and line.split()[-1] == "installed" and name:
            installed.add(name)
        elif not line.strip():
            name = ""
    return installed


def image_installed(root: Path) -> set[str]:
    try:
        return installed_packages((root / "var/lib/dpkg/status").read_text(errors="replace"))
    except FileNotFoundError:
        return set()


def has_lists(root: Path) -> bool:
    """Whether the tree holds apt's package lists (``apt-get update`` ran there and they were kept)."""
    lists = root / "var/lib/apt/lists"
    return lists.is_dir() and any(p.name.endswith("_Packages") for p in lists.iterdir())


def unknown_packages(policy_stdout: str, requested: Iterable[str]) -> list[str]:
    """The requested names ``apt-cache policy`` knows no installable version of (not listed at all, or
    ``Candidate: (none)``: a purely virtual name or one only in another suite)."""
    candidates: dict[str, str] = {}
    current = ""
    for line in policy_stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1].split(":", 1)[0]
        elif line.strip().startswith("Candidate:") and current:
            candidates[current] = line.split(":", 1)[1].strip()
    return [name for name in requested if candidates.get(name, "(none)") == "(none)"]


def deb_package(filename: str) -> str | None:
    """The package a ``NAME_VERSION_ARCH.deb`` file holds (None for another name)."""
    match = _DEB.match(filename)
    return match.group("name") if match else None


def last_lines(text: str, count: int = 3) -> str:
    """apt's last words (its ``E:`` lines, usually), for a reason in one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "dpkg:"))]
    return " ".join((errors or lines)[-count:])


# ---------------------------------------------------------------------------------------- apt in the image chroot


def sources_line(uri: str, suite: str, keyring: str | None) -> str:
    """One ``deb`` line for the image's own apt: this machine's mirror (``image_build.Mirror``), never a fixed host."""
    options = f"[signed-by={keyring}] " if keyring else ""
    return f"deb {options}{uri} {suite} main\n"


def apt_update() -> list[str]:
    # No translations: 30 MiB of descriptions in every version would be all that version holds on its own.
    return ["apt-get", "-q", "-o", "Acquire::Languages=none", "update"]


def apt_policy(packages: Sequence[str]) -> list[str]:
    return ["apt-cache", *APT_NO_CACHE, "policy", *packages]


def apt_download(packages: Sequence[str]) -> list[str]:
    """Download what installing ``packages`` needs that the image lacks, into its ``/var/cache/apt/archives``."""
    return ["apt-get", "install", *APT_INSTALL_FLAGS, "--download-only", *packages]


def apt_install(packages: Sequence[str]) -> list[str]:
    return ["apt-get", "install", *APT_INSTALL_FLAGS, *packages]


def apt_remove(packages: Sequence[str]) -> list[str]:
    # --auto-remove: the dependencies the packages brought (marked automatic by apt) leave with them.
    return ["apt-get", "remove", "-y", "-q", "--auto-remove", *packages]


# -------------------------------------------------------------------------------------------- on the nodes


def node_dir(image: str, version: int) -> str:
    return f"{NODE_DIR}/{image}-{version}"


def node_prepare_command(directory: str) -> str:
    """Before the copy: an empty place for the files (scp -r makes ``directory`` itself)."""
    quoted = shlex.quote(directory)
    return f"mkdir -p {shlex.quote(str(Path(directory).parent))} && rm -rf {quoted}"


def _verify(packages: Sequence[str], *, installed: bool) -> str:
    """Exit 0 only when every package is (or is no longer) installed, as dpkg says; else name the ones that are
    not on stderr."""
    names = " ".join(shlex.quote(p) for p in packages)
    want = "" if installed else "!"
    return (
        f"bad=; for p in {names}; do s=$(dpkg-query -W -f '${{Status}}' \"$p\" 2>/dev/null || true); "
        f'if {want} [ "${{s##* }}" = installed ]; then :; else bad="$bad $p"; fi; done; '
        f'if [ -n "$bad" ]; then echo "{"not installed" if installed else "still installed"}:$bad" >&2; exit 1; fi'
    )


def node_install_command(directory: str, debs: Sequence[str], packages: Sequence[str]) -> str:
    """On a node: install the copied files, mark the dependencies automatic (as apt did in the image), check dpkg
    has every package, remove the files. apt's simulation first: when it would install anything but the files (the
    node lacks a package the image had), nothing is done and the node fails naming them (apt's ``--no-download``
    cannot be used: it refuses local files too). With no files (the image had every package already), only
    ``apt-get install --no-download`` of the names, which succeeds when the node has them."""
    env = " ".join(f"{k}={v}" for k, v in APT_ENV.items())
    flags = " ".join(shlex.quote(f) for f in APT_INSTALL_FLAGS)
    names = " ".join(shlex.quote(p) for p in packages)
    log = shlex.quote(f"{directory}.log")
    if debs:
        files = " ".join(shlex.quote(f"./{deb}") for deb in debs)
        held = " ".join(sorted({name for deb in debs if (name := deb_package(deb)) is not None}))
        where = shlex.quote(directory)
        step = (
            f"cd {where} && inst=$({env} apt-get install -s {flags} {files} | awk '$1 == \"Inst\" {{print $2}}') && "
            f'extra=$(for p in $inst; do case " {held} " in *" $p "*) ;; *) printf " %s" "$p";; esac; done) && '
            'if [ -n "$extra" ]; then echo "E: needs packages the image had and this node lacks:$extra"; exit 1; '
            "fi && "
            f"{env} apt-get install {flags} {files}"
        )
    else:
        where = shlex.quote(str(Path(directory).parent))  # made: the log is written there
        step = f"mkdir -p {where} && cd {where} && {env} apt-get install {flags} --no-download {names}"
    deps = sorted({name for deb in debs if (name := deb_package(deb)) is not None} - set(packages))
    mark = f" && apt-mark auto {' '.join(shlex.quote(d) for d in deps)} >/dev/null" if deps else ""
    return (
        f"if ! ( {step}{mark} ) >{log} 2>&1; then tail -n 3 {log} >&2; exit 1; fi; "
        f"{_verify(packages, installed=True)}; cd / && rm -rf {shlex.quote(directory)} {log}"
    )


def node_remove_command(packages: Sequence[str]) -> str:
    """On a node: remove those of the packages it has (a node without one is already right), then check."""
    env = " ".join(f"{k}={v}" for k, v in APT_ENV.items())
    names = " ".join(shlex.quote(p) for p in packages)
    have = (
        f"have=$(dpkg-query -W -f '${{Package}} ${{Status}}\\n' {names} 2>/dev/null | "
        "awk '$NF == \"installed\" {print $1}')"
    )
    log = f"{NODE_DIR}/remove.log"
    remove = (
        f'if [ -n "$have" ]; then mkdir -p {NODE_DIR} && {env} apt-get remove -y -q --auto-remove $have >{log} 2>&1 '
        f"|| {{ tail -n 3 {log} >&2; exit 1; }}; fi"
    )
    return f"{have}; {remove}; {_verify(packages, installed=False)}"
