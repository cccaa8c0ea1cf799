"""``image build``: a Debian client image from scratch with debootstrap.

The mirror is the one this machine's apt already uses (read from its sources), never a fixed host. The image gets
a kernel, an init and an ssh server; what belongs to one node (host name, addresses, ssh host keys, machine id) is
removed so that the installer fills it in per node.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import FieldError, NeedsRoot, UserError
from haoscar.provision.image_rsync import Progress

# A kernel, an init, an ssh server, and ifupdown for the per-node /etc/network/interfaces the installer writes.
# The cloud kernel is Debian's smallest with virtio and common NIC drivers.
BOOT_PACKAGES: tuple[str, ...] = ("linux-image-cloud-amd64", "systemd-sysv", "openssh-server", "ifupdown")
# What a node needs to join the cluster (docs/install.md "Joining the cluster"): the kernel NFS client for /home
# from the private alias (with netbase's /etc/protocols, without which mount.nfs finds no "tcp"), slurmd + munge
# (configless from the controller), time from the alias (dbus: timedatectl asks timesyncd through it), rsync for
# ``node sync``, and Debian's Open MPI for ``cluster test``'s MPI hello.
JOIN_PACKAGES: tuple[str, ...] = (
    "nfs-common",
    "netbase",
    "slurmd",
    "munge",
    "systemd-timesyncd",
    "dbus",
    "rsync",
    "openmpi-bin",
)
BASE_PACKAGES: tuple[str, ...] = (*BOOT_PACKAGES, *JOIN_PACKAGES)

_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SUITE = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str | None = None


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            current[key] += " " + raw.strip()
            continue
        key, _, value = raw.partition(":")
        key = key.strip().lower()
        current[key] = value.strip()
    return stanzas


def _candidates(apt_dir: Path) -> list[tuple[Mirror, list[str]]]:
    found: list[tuple[Mirror, list[str]]] = []
    sources_d = apt_dir / "sources.list.d"
    files = sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []
    for path in files:
        for stanza in _deb822_stanzas(path.read_text()):
            if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
                continue
            for uri in stanza.get("uris", "").split():
                found.append((Mirror(uri, stanza.get("signed-by") or None), stanza.get("suites", "").split()))
    lists = [apt_dir / "sources.list", *(sorted(sources_d.glob("*.list")) if sources_d.is_dir() else [])]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            keyring = None
            if words and words[0].startswith("["):
                options = []
                while words:
                    word = words.pop(0)
                    options.append(word)
                    if word.endswith("]"):
                        break
                for option in " ".join(options).strip("[]").split():
                    if option.startswith("signed-by="):
                        keyring = option.split("=", 1)[1]
            if len(words) >= 2:
                found.append((Mirror(words[0], keyring), [words[1]]))
    return found


def apt_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> Mirror:
    """The mirror this machine's apt uses for the Debian archive: an entry listing ``suite`` itself, else one
    listing a main suite (no ``-updates`` / ``-security`` suffix), so a bookworm machine can build trixie."""
    candidates = _candidates(apt_dir)
    for mirror, suites in candidates:
        if suite in suites:
            return mirror
    for mirror, suites in candidates:
        if any("-" not in s and "/" not in s for s in suites):
            return mirror
    raise UserError(
        f"no Debian mirror is configured in {apt_dir}/sources.list or {apt_dir}/sources.list.d/*.sources; "
        "configure apt first (image build uses the same mirror)"
    )


def check_build_args(suite: str, packages: Sequence[str]) -> list[str]:
    if not _SUITE.match(suite):
        raise FieldError("suite", f"{suite!r} is not a Debian suite name; use e.g. bookworm or trixie", sep=None)
    bad = [p for p in packages if not _PACKAGE.match(p)]
    if bad:
        raise FieldError("packages", f"not Debian package names: {', '.join(bad)}; use names like htop or slurmd")
    return list(dict.fromkeys([*BASE_PACKAGES, *packages]))


# debootstrap's "I:" lines in the order they come, with how far the build is when each appears.
_STAGES: tuple[tuple[str, float, str], ...] = (
    ("Retrieving InRelease", 1, "reading the mirror's index"),
    ("Resolving dependencies", 4, "resolving dependencies"),
    ("Retrieving ", 6, "downloading packages"),
    ("Validating ", 30, "validating packages"),
    ("Extracting ", 40, "extracting the base system"),
    ("Installing core packages", 48, "installing core packages"),
    ("Unpacking the base system", 55, "unpacking packages"),
    ("Configuring the base system", 75, "configuring packages"),
    ("Base system installed successfully", 95, "base system installed"),
)


def stage_of(line: str) -> tuple[float, str] | None:
    if not line.startswith("I: "):
        return None
    text = line[3:]
    for prefix, percent, label in _STAGES:
        if text.startswith(prefix):
            return percent, label
    return None


def run_debootstrap(
    suite: str,
    packages: Sequence[str],
    target: Path,
    *,
    mirror: Mirror,
    cache_dir: Path | None,
    progress: Progress | None,
    log_path: Path,
) -> None:
    if os.geteuid() != 0:
        raise NeedsRoot("image build runs debootstrap, which needs root; run it as root")
    argv = ["debootstrap", "--variant=minbase", "--components=main", f"--include={','.join(packages)}"]
    if mirror.keyring:
        argv.append(f"--keyring={mirror.keyring}")
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        argv.append(f"--cache-dir={cache_dir}")
    argv += [suite, str(target), mirror.uri]
    last = 0.0
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            stage = stage_of(line)
            if stage is not None and progress is not None:
                # Each stage has many lines (one per package); creep forward within a stage so the bar moves.
                last = max(stage[0], min(last + 0.3, 94.0))
                progress(last, stage[1])
        code = proc.wait()
    if code != 0:
        tail = [line for line in log_path.read_text().splitlines() if line.strip()][-3:]
        raise UserError(f"debootstrap {suite} from {mirror.uri} failed (exit {code}); nothing was stored", tail)


def strip_node_identity(root: Path) -> list[str]:
    """Remove what belongs to one machine, not to the image: ssh host keys (each node makes its own on first
    boot), the host name, the machine id, name servers and network settings (written per node at install time),
    and the downloaded package files. Returns what was changed, for the version's metadata."""
    done: list[str] = []
    for key in sorted((root / "etc/ssh").glob("ssh_host_*")):
        key.unlink()
        done.append(f"removed /etc/ssh/{key.name}")
    # ssl-cert's snakeoil key is made at package install: one private key shared by every node would be no key
    # (and the image scan refuses to publish private keys). ``make-ssl-cert generate-default-snakeoil`` remakes it.
    for key in sorted((root / "etc/ssl/private").glob("ssl-cert-snakeoil.key")):
        key.unlink()
        done.append(f"removed /etc/ssl/private/{key.name}")
    # munge's postinst makes a key; the cluster's own key reaches each node through its install plan instead.
    munge_key = root / "etc/munge/munge.key"
    if munge_key.is_file():
        munge_key.unlink()
        done.append("removed /etc/munge/munge.key")
    for name, content in (
        ("etc/hostname", ""),
        ("etc/machine-id", ""),
        ("etc/resolv.conf", ""),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ):
        path = root / name
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
        done.append(f"reset /{name}")
    interfaces = root / "etc/network/interfaces"
    if interfaces.parent.is_dir():
        interfaces.write_text(
            "# Written per node by the haoscar installer.\nauto lo\niface lo inet loopback\n"
            "source /etc/network/interfaces.d/*\n"
        )
        done.append("reset /etc/network/interfaces")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    return done


def check_built(root: Path) -> dict[str, str]:
    """What makes the tree a bootable-looking node root; raises when debootstrap silently left something out."""
    kernels = sorted(p.name for p in (root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise UserError(f"the built image has no kernel under {root}/boot; check the package list")
    if not (root / "usr/sbin/sshd").exists():
        raise UserError(f"the built image has no /usr/sbin/sshd under {root}; check the package list")
    return {"kernel": kernels[-1]}
