"""apt in an image's tree: the new image version of ``pkg install`` / ``pkg remove`` (the pure part, the command
lines and how apt's answers read, is ``provision.image_packages``).

A stored version is never written: apt runs in an overlay (overlayfs) whose lower layer is the current version and
whose upper layer is a scratch directory, so apt's changes (new files, files dpkg rewrote or appended to, removals)
land in the scratch only; the merged tree is then stored as the next version with ``rsync --link-dest`` onto the
current one, as ``image build`` does, so unchanged files cost nothing, and nothing was copied to get there.

The overlay lives in a private mount namespace (``unshare --mount``, held by a ``sleep`` this module starts and
ends), with what debootstrap mounts for a chroot: ``/proc``, ``/dev``, and this machine's ``/etc/resolv.conf`` over
the image's (emptied) one so that the mirror's name resolves; apt runs there through ``nsenter`` and ``chroot``. The
mounts vanish with the namespace and never show on the head. A ``policy-rc.d`` keeps packages' services from
starting inside the tree (removed before the tree is stored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from haoscar.errors import FieldError, NeedsRoot, UserError
from haoscar.provision import image_packages as ip
from haoscar.provision.image_build import BASE_PACKAGES, apt_mirror
from haoscar.provision.image_meta import VersionMeta
from haoscar.provision.image_rsync import RSYNC_COPY_FLAGS, rsync_failure
from haoscar.provision.images import ImageStore

DEBS = "debs"  # beside root/ in a version directory: the files nodes install offline

# Holds the namespace: the overlay and the chroot's mounts, "ready", then waits for its stdin to close (haoscar's end
# of the pipe: closed on exit, or by the kernel when haoscar dies), so no namespace outlives its run.
_HOLD = (
    'set -e; m="$4"; mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$m"; '
    'mount -t proc proc "$m/proc"; mount --bind /dev "$m/dev"; '
    'if [ -f "$m/etc/resolv.conf" ] && [ ! -L "$m/etc/resolv.conf" ]; then '
    'mount --bind /etc/resolv.conf "$m/etc/resolv.conf"; fi; echo ready; read -r _ || true'
)


def chroot_argv(root: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run by ``chroot`` in ``root`` with apt's environment (no prompt, C locale)."""
    env = ["env", *(f"{k}={v}" for k, v in ip.APT_ENV.items()), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    return ["chroot", str(root), *env, *argv]


def _done(argv: Sequence[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{' '.join(argv[-3:])} ran over {timeout:g} s in the image's chroot; nothing was stored"
        ) from None


class Overlay:
    """The current version under an overlay in a private mount namespace; ``run`` chroots into the merged tree."""

    def __init__(self, current: Path, work: Path) -> None:
        if any(c in str(current) + str(work) for c in ",:"):
            raise UserError(f"{work}: a state directory path with ',' or ':' cannot hold an overlay; use another")
        self.current = current
        self.upper, self.merged = work / "upper", work / "merged"
        self._work = work / "overlay-work"
        self._holder: subprocess.Popen[str] | None = None

    def __enter__(self) -> Overlay:
        for path in (self.upper, self.merged, self._work):
            path.mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _HOLD, "sh"]
        argv += [str(self.current), str(self.upper), str(self._work), str(self.merged)]
        holder = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._holder = holder
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.readline().strip() != "ready":
            holder.wait()
            raise UserError("cannot mount the image's overlay for apt; nothing was stored", [holder.stderr.read()])
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._holder is not None:
            # The namespace, and with it every mount, ends with its last process.
            for stream in (self._holder.stdin, self._holder.stdout, self._holder.stderr):
                if stream is not None:
                    stream.close()
            try:
                self._holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()

    def _enter(self) -> list[str]:
        assert self._holder is not None
        return ["nsenter", f"--target={self._holder.pid}", "--mount"]

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return _done([*self._enter(), *chroot_argv(self.merged, argv)])

    def store(self, new_root: Path) -> None:
        """The merged tree as ``new_root``: files unchanged since the current version are hard links to it."""
        # The chroot's mounts first: /proc, /dev and this machine's resolv.conf are no part of the image.
        mounted = [f"{self.merged}/{path}" for path in ("etc/resolv.conf", "dev", "proc")]
        _done([*self._enter(), "umount", *mounted])  # resolv.conf may not be a mount: checked by rsync's result
        argv = [*self._enter(), "rsync", *RSYNC_COPY_FLAGS, f"--link-dest={self.current}"]
        result = _done([*argv, f"{self.merged}/", f"{new_root}/"])
        if result.returncode != 0:
            raise rsync_failure("storing the new version", result)


def _suite(root: Path) -> str:
    """The Debian suite of the tree (``VERSION_CODENAME`` of its os-release)."""
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / name).read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    raise UserError(f"the image at {root} has no os-release naming its Debian suite; apt cannot be used in it")


def _has_sources(root: Path) -> bool:
    listed = root / "etc/apt/sources.list"
    if listed.is_file() and any(line.split()[:1] == ["deb"] for line in listed.read_text().splitlines()):
        return True
    parts = root / "etc/apt/sources.list.d"
    return parts.is_dir() and any(p.suffix in (".list", ".sources") for p in parts.iterdir())


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _check_known(run: Runner, packages: Sequence[str], where: str) -> None:
    """A FieldError naming the packages apt-cache (offline, from the tree's lists) knows no version of."""
    done = run(ip.apt_policy(packages))
    if done.returncode != 0:
        detail = f"apt-cache failed in {where} (exit {done.returncode}); nothing was changed"
        raise UserError(detail, [ip.last_lines(done.stderr)])
    unknown = ip.unknown_packages(done.stdout, packages)
    if unknown:
        detail = (
            f"no package {', '.join(unknown)} in {where} (check the name with apt-cache search); nothing was changed"
        )
        raise FieldError("packages", detail, sep=": ")


def check_available(store: ImageStore, image: str, packages: Sequence[str]) -> bool:
    """Before any change: when the current version kept apt's lists, the unknown names are refused from them
    (offline; apt-cache writes nothing into the stored tree). Returns whether the check could be made."""
    root = store.current_root(image)
    if not ip.has_lists(root):
        return False
    _check_known(lambda argv: _done(chroot_argv(root, argv)), packages, f"the apt lists of image {image}")
    return True


@dataclass(frozen=True)
class Change:
    """What ``pkg install|remove`` does to the image: install (True) or remove ``packages``."""

    image: str
    packages: list[str]
    install: bool


def _apt(tree: Overlay, argv: Sequence[str], what: str) -> None:
    done = tree.run(argv)
    if done.returncode != 0:
        raise UserError(
            f"{what} failed in the image's chroot (exit {done.returncode}); nothing was stored",
            [ip.last_lines(done.stdout + "\n" + done.stderr)],
        )


def _install(change: Change, tree: Overlay, debs: Path) -> dict[str, str]:
    suite = _suite(tree.current)
    mirror = apt_mirror(suite)
    done = tree.run(ip.apt_update())
    if done.returncode != 0 or "Err:" in done.stdout or "Failed to fetch" in done.stderr:
        raise UserError(
            f"the image's apt cannot reach the mirror {mirror.uri} from this machine; run pkg install where it is "
            "reachable (the files it resolves are kept with the image version, for the nodes later); nothing was "
            "stored",
            [ip.last_lines(done.stdout + "\n" + done.stderr)],
        )
    _check_known(tree.run, change.packages, f"{mirror.uri} {suite} main")
    _apt(tree, ip.apt_download(change.packages), "downloading " + " ".join(change.packages))
    debs.mkdir()
    # The current version holds no .deb (image build removes them): every file here was resolved just now.
    files = sorted(p.name for p in (tree.upper / "var/cache/apt/archives").glob("*.deb"))
    for name in files:
        shutil.copy2(tree.upper / "var/cache/apt/archives" / name, debs / name)
    _apt(tree, ip.apt_install(change.packages), "installing " + " ".join(change.packages))
    _apt(tree, ["apt-get", "clean"], "apt-get clean")
    return {"installed": " ".join(change.packages), "debs": " ".join(files), "mirror": mirror.uri}


def _prepare(tree: Overlay) -> None:
    """Before the overlay is mounted (its upper layer is not written while mounted): the policy-rc.d, and the
    mirror as the image's apt source when it has none (a tree imported without one)."""
    policy = tree.upper / "usr/sbin/policy-rc.d"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(ip.POLICY_RC_D)
    policy.chmod(0o755)
    if not _has_sources(tree.current):
        suite = _suite(tree.current)
        mirror = apt_mirror(suite)
        (tree.upper / "etc/apt").mkdir(parents=True, exist_ok=True)
        (tree.upper / "etc/apt/sources.list").write_text(ip.sources_line(mirror.uri, suite, mirror.keyring))


def _strip_new_keys(tree: Overlay) -> list[str]:
    """Private keys a package script made in the chroot (ssh host keys, ssl-cert's snakeoil) belong to one machine,
    not to every node: removed, as ``image build`` does (new files are in the upper layer)."""
    made = [*(tree.upper / "etc/ssh").glob("ssh_host_*"), *(tree.upper / "etc/ssl/private").glob("*snakeoil.key")]
    removed = [
        f"/{key.relative_to(tree.upper)}" for key in made if not (tree.current / key.relative_to(tree.upper)).exists()
    ]
    if removed:
        _apt(tree, ["rm", "-f", *removed], "removing the keys made in the chroot")
    return removed


def apply_change(store: ImageStore, change: Change, recorded: list[str]) -> VersionMeta:
    """The next version of ``change.image``: the current one with the packages installed (their ``.deb`` files kept
    in the version's ``debs/``) or removed; the image's recorded packages become ``recorded``."""
    if os.geteuid() != 0:
        raise NeedsRoot("pkg changes an image's tree with chroot, which needs root; run it as root")

    def fill(new_root: Path, current: Path | None) -> dict[str, str]:
        assert current is not None  # derive() refuses an image without a current version
        overlay = Overlay(current, new_root.parent / "overlay")
        try:
            overlay.upper.mkdir(parents=True)
            _prepare(overlay)
            with overlay:
                if change.install:
                    details = _install(change, overlay, new_root.parent / DEBS)
                else:
                    _apt(overlay, ip.apt_remove(change.packages), "removing " + " ".join(change.packages))
                    _apt(overlay, ["apt-get", "clean"], "apt-get clean")  # its caches: 60 MiB in each version
                    details = {"removed": " ".join(change.packages)}
                _apt(overlay, ["rm", "-f", "/usr/sbin/policy-rc.d"], "removing policy-rc.d")
                removed = _strip_new_keys(overlay)
                overlay.store(new_root)
        finally:
            shutil.rmtree(new_root.parent / "overlay", ignore_errors=True)
        keys = {"node_files": "; ".join(f"removed {k}" for k in removed)} if removed else {}
        return {**details, "packages": " ".join(recorded), **keys}

    return store.derive(change.image, fill, recorded)


def refuse_base(packages: Sequence[str]) -> None:
    """A node without a kernel, an init or sshd cannot be reached again: those are not removed."""
    base = [p for p in packages if p in BASE_PACKAGES]
    if base:
        detail = f"{', '.join(base)}: a node needs it (kernel, init, ssh); nothing was changed"
        raise FieldError("packages", detail, sep=": ")


def debs_of(store: ImageStore, image: str, packages: Sequence[str]) -> tuple[int, Path] | None:
    """The newest version of ``image`` whose ``pkg install`` kept the ``.deb`` files of all ``packages``."""
    for version in reversed(store.versions(image)):
        meta = store.meta(image, version)
        debs = store.version_root(image, version).parent / DEBS
        if set(packages) <= set(meta.details.get("installed", "").split()) and debs.is_dir():
            return version, debs
    return None
