"""The image store: versioned client images under ``STATE_DIR/images``.

Layout of one image::

    images/NAME/image.json          name, ip_assignment, post_install, exclude file, next version number
    images/NAME/exclude             the per-image rsync exclude file (optional)
    images/NAME/current             the current version number (written atomically)
    images/NAME/versions/N/root/    the tree a node receives
    images/NAME/versions/N/meta.json

Every fetch or build makes version N+1 in a hidden temporary directory with ``rsync --link-dest`` onto the
current version, and renames it into place only when complete: a failed fetch leaves no half version, and files
that did not change are hard links that cost no space. The network installer serves ``current_root(name)``.

``images/`` itself is mode 0700, owned by root: a version's tree keeps the modes of the system it came from (a
``/usr/bin/passwd`` setuid root, a ``/root`` of its own), and an old version can hold a setuid binary with a known
hole, so no other user of the head may walk into any of it. Every operation that makes, changes or serves a
version sets that mode again (a store made by an earlier release, 0755, is closed on its first use).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from haoscar.errors import FieldError, NotFound, UserError
from haoscar.fsutil import atomic_write
from haoscar.provision import image_build
from haoscar.provision.image_diff import TreeDiff, diff_trees
from haoscar.provision.image_meta import (
    ImageSettings,
    VersionMeta,
    check_ip_assignment,
    check_name,
    check_post_install,
    read_json,
    write_json,
)
from haoscar.provision.image_rsync import (
    DEFAULT_STORE_PATHS,
    RSYNC_COPY_FLAGS,
    Progress,
    fetch_rules,
    network_mounts,
    parse_mounts,
    rsync_failure,
    run_rsync,
    tree_stats,
)
from haoscar.provision.image_secrets import lock_shadow, refuse_secrets
from haoscar.provision.sshkeys import ensure_identity


def no_nodes(_state_dir: Path, _name: str) -> list[str]:
    """A store on its own knows no node definitions: those are in the cluster database, a layer above's business
    (``haoscar.commands.wiring.image_store`` injects the database's lookup)."""
    return []


@dataclass(frozen=True)
class ImageSummary:
    name: str
    current: int | None
    versions: list[int]
    ip_assignment: str
    post_install: str
    source: str
    bytes: int
    exclude_file: str | None


@dataclass(frozen=True)
class ImageDetails:
    summary: ImageSummary
    versions: list[VersionMeta]
    root: Path | None


@dataclass(frozen=True)
class FetchRequest:
    name: str
    golden_client: str
    ssh_user: str = "root"
    ssh_port: int = 22
    source_root: str = "/"
    ip_assignment: str | None = None
    post_install: str | None = None
    exclude_file: Path | None = None


InUse = Callable[[Path, str], list[str]]
Fill = Callable[[Path, Path | None], dict[str, str]]  # (new root, current root) -> details of the new version
STORE_MODE = 0o700


class ImageStore:
    def __init__(self, state_dir: Path, in_use: InUse = no_nodes) -> None:
        self.state_dir = state_dir
        self.root = state_dir / "images"
        self._in_use = in_use

    def _lock(self, *, create: bool = False) -> None:
        """``images/`` mode 0700: nothing below it reachable by another user of the head (see the module doc)."""
        if create:
            self.root.mkdir(mode=STORE_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.root.stat().st_mode & 0o7777 != STORE_MODE:
                os.chmod(self.root, STORE_MODE)

    # ---- reading -------------------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _settings(self, name: str) -> ImageSettings:
        path = self._dir(name) / "image.json"
        try:
            return ImageSettings.from_json(read_json(path))
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none yet"
            raise NotFound(
                f"image {name!r} is not in the store; known images: {known} "
                "(make one with haoscar image fetch or haoscar image build)"
            ) from None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "image.json").is_file())

    def versions(self, name: str) -> list[int]:
        vdir = self._dir(name) / "versions"
        if not vdir.is_dir():
            return []
        return sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit() and (p / "meta.json").is_file())

    def current(self, name: str) -> int | None:
        try:
            text = (self._dir(name) / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def meta(self, name: str, version: int) -> VersionMeta:
        path = self._dir(name) / "versions" / str(version) / "meta.json"
        try:
            return VersionMeta.from_json(read_json(path))
        except FileNotFoundError:
            have = ", ".join(map(str, self.versions(name))) or "none"
            raise NotFound(f"image {name!r} has no version {version}; its versions: {have}") from None

    def version_root(self, name: str, version: int) -> Path:
        self.meta(name, version)
        return self._dir(name) / "versions" / str(version) / "root"

    def current_root(self, name: str) -> Path:
        """The tree installing nodes receive for image ``name``."""
        self._lock()
        self._settings(name)
        current = self.current(name)
        if current is None:
            raise NotFound(f"image {name!r} has no version yet; fetch or build it first")
        return self.version_root(name, current)

    def _summary(self, name: str) -> ImageSummary:
        settings = self._settings(name)
        versions = self.versions(name)
        current = self.current(name)
        # Space the image takes on disk: the current version plus what older versions hold on their own.
        total = sum(self.meta(name, v).new_bytes for v in versions)
        source = self.meta(name, current).source if current is not None else settings.source
        return ImageSummary(
            name=name,
            current=current,
            versions=versions,
            ip_assignment=settings.ip_assignment,
            post_install=settings.post_install,
            source=source,
            bytes=total,
            exclude_file=settings.exclude_file,
        )

    def show(self, name: str) -> ImageDetails:
        summary = self._summary(name)
        metas = [self.meta(name, v) for v in summary.versions]
        root = self.version_root(name, summary.current) if summary.current is not None else None
        return ImageDetails(summary=summary, versions=metas, root=root)

    # ---- making versions -----------------------------------------------------------------------------------

    def _new_settings(
        self, name: str, ip_assignment: str | None, post_install: str | None, source: str
    ) -> tuple[ImageSettings, bool]:
        """The image's settings after this fetch/build (not yet written) and whether the image is new."""
        check_name(name)
        ip = check_ip_assignment(ip_assignment) if ip_assignment is not None else None
        post = check_post_install(post_install) if post_install is not None else None
        try:
            settings = self._settings(name)
            is_new = False
        except NotFound:
            settings = ImageSettings(name=name)
            is_new = True
        settings = replace(
            settings,
            ip_assignment=ip or settings.ip_assignment,
            post_install=post or settings.post_install,
            source=source,
        )
        return settings, is_new

    def _commit(
        self,
        settings: ImageSettings,
        fill: Callable[[Path, Path | None], dict[str, str]],
        method: str,
        exclude_file: Path | None = None,
    ) -> VersionMeta:
        """Make the next version of an image: ``fill(new_root, parent_root)`` populates the new tree inside a
        temporary directory; only a complete version is renamed into place and made current."""
        name = settings.name
        self._lock(create=True)
        image_dir = self.root / name
        versions_dir = image_dir / "versions"
        versions_dir.mkdir(parents=True, exist_ok=True)
        parent = self.current(name)
        parent_root = versions_dir / str(parent) / "root" if parent is not None else None
        number = max([settings.next_version, *(v + 1 for v in self.versions(name))])
        work = Path(tempfile.mkdtemp(prefix=f".new-{number}-", dir=versions_dir))  # 0700, under a 0700 store
        try:
            new_root = work / "root"
            details = fill(new_root, parent_root)
            refuse_secrets(new_root, name)
            stats = tree_stats(new_root)
            meta = VersionMeta(
                version=number,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                source=settings.source,
                ip_assignment=settings.ip_assignment,
                post_install=settings.post_install,
                files=stats.files,
                bytes=stats.bytes,
                new_bytes=stats.new_bytes,
                parent=parent,
                method=method,  # type: ignore[arg-type]
                details=details,
            )
            write_json(work / "meta.json", meta)
            if exclude_file is not None:
                shutil.copyfile(exclude_file, image_dir / "exclude")
                settings = replace(settings, exclude_file=str(image_dir / "exclude"))
            os.rename(work, versions_dir / str(number))
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            if not any(versions_dir.iterdir()) and not (image_dir / "image.json").exists():
                shutil.rmtree(image_dir, ignore_errors=True)
            raise
        write_json(image_dir / "image.json", replace(settings, next_version=number + 1))
        atomic_write(image_dir / "current", f"{number}\n")
        return meta

    def fetch(self, request: FetchRequest, progress: Progress | None = None) -> VersionMeta:
        """Pull a golden client's file system over rsync/ssh into a new version of an image."""
        source = f"golden-client:{request.ssh_user}@{request.golden_client}:{request.source_root}"
        settings, _ = self._new_settings(request.name, request.ip_assignment, request.post_install, source)
        if not request.source_root.startswith("/"):
            raise FieldError("source_root", f"{request.source_root!r} must be an absolute path, e.g. / or /srv/golden")
        exclude_file = request.exclude_file
        if exclude_file is not None and not exclude_file.is_file():
            detail = f"exclude file {exclude_file} does not exist; give a file with one path per line"
            raise FieldError("exclude_file", detail, sep=None)
        identity = ensure_identity(self.state_dir)
        target = f"{request.ssh_user}@{request.golden_client}"
        if progress is not None:
            progress(0, f"reading mounts of {request.golden_client}")
        if not 0 < request.ssh_port < 65536:
            detail = f"ssh port {request.ssh_port} is out of range; use 1-65535 (usually 22)"
            raise FieldError("ssh_port", detail, sep=None)
        probe = subprocess.run(
            [*identity.ssh_argv(request.ssh_port), target, "cat", "/proc/mounts"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if probe.returncode != 0:
            reason = probe.stderr.strip().splitlines()[-1:] or [f"ssh exited with status {probe.returncode}"]
            raise UserError(
                f"cannot reach golden client {request.golden_client} over ssh as {request.ssh_user}; check that "
                f"it runs sshd and that {identity.key}.pub is in its authorized keys; nothing was stored",
                reason,
            )
        rules = fetch_rules(
            request.source_root,
            network_mounts(parse_mounts(probe.stdout)),
            [*DEFAULT_STORE_PATHS, str(self.root.resolve())],
        )
        stored_exclude = self.root / request.name / "exclude"
        per_image = exclude_file or (stored_exclude if stored_exclude.is_file() else None)

        def fill(new_root: Path, parent_root: Path | None) -> dict[str, str]:
            rules_file = new_root.parent / "excludes"
            rules_file.write_text("".join(f"{rule}\n" for rule in rules))
            rsh = identity.rsync_rsh(request.ssh_port)
            argv = ["rsync", *RSYNC_COPY_FLAGS, "-e", rsh, f"--exclude-from={rules_file}"]
            if per_image is not None:
                argv.append(f"--exclude-from={per_image}")
            if parent_root is not None:
                argv.append(f"--link-dest={parent_root}")
            argv += [f"{target}:{request.source_root.rstrip('/')}/", f"{new_root}/"]
            result = run_rsync(argv, progress, f"fetching from {request.golden_client}")
            # 24: files vanished while they were copied; normal on a running golden client.
            if result.returncode not in (0, 24):
                raise rsync_failure(f"fetching {request.golden_client}:{request.source_root}", result)
            rules_file.unlink()
            locked = lock_shadow(new_root)
            return {"excluded": " ".join(rules), **({"locked_passwords": " ".join(locked)} if locked else {})}

        return self._commit(settings, fill, "fetch", exclude_file)

    def import_tree(
        self,
        name: str,
        directory: Path,
        *,
        ip_assignment: str | None = None,
        post_install: str | None = None,
        progress: Progress | None = None,
    ) -> VersionMeta:
        """Copy a local directory (a root tree) into a new version of an image, as the spec's directory source."""
        settings, _ = self._new_settings(name, ip_assignment, post_install, f"directory:{directory}")
        if not directory.is_dir():
            detail = f"{directory} is not a directory; give the root of a tree to import"
            raise FieldError("directory", detail, sep=None)

        def fill(new_root: Path, parent_root: Path | None) -> dict[str, str]:
            argv = ["rsync", *RSYNC_COPY_FLAGS]
            if parent_root is not None:
                argv.append(f"--link-dest={parent_root}")
            argv += [f"{directory}/", f"{new_root}/"]
            result = run_rsync(argv, progress, f"copying {directory}")
            if result.returncode != 0:
                raise rsync_failure(f"copying {directory}", result)
            return {}

        return self._commit(settings, fill, "import")

    def build(
        self,
        name: str,
        *,
        suite: str = "bookworm",
        packages: Sequence[str] = (),
        ip_assignment: str | None = None,
        post_install: str | None = None,
        progress: Progress | None = None,
        apt_dir: Path = Path("/etc/apt"),
    ) -> VersionMeta:
        """Build a Debian image with debootstrap from this machine's apt mirror."""
        settings, _ = self._new_settings(name, ip_assignment, post_install, f"debootstrap:{suite}")
        # A rebuild keeps what `pkg install` added to the image (its recorded packages), so nodes stay the same.
        extra = list(dict.fromkeys([*settings.packages, *packages]))
        all_packages = image_build.check_build_args(suite, extra)
        settings = replace(settings, packages=[p for p in extra if p not in image_build.BASE_PACKAGES])
        mirror = image_build.apt_mirror(suite, apt_dir)
        cache = self.state_dir / "cache" / "debootstrap" / suite

        def fill(new_root: Path, parent_root: Path | None) -> dict[str, str]:
            # debootstrap builds a scratch tree; with a previous version the scratch is copied over with
            # --link-dest, so packages that did not change between builds share their files.
            scratch = new_root if parent_root is None else new_root.parent / "scratch"
            image_build.run_debootstrap(
                suite,
                all_packages,
                scratch,
                mirror=mirror,
                cache_dir=cache,
                progress=progress,
                log_path=new_root.parent / "debootstrap.log",
            )
            if progress is not None:
                progress(96, "removing per-node files")
            changes = image_build.strip_node_identity(scratch)
            details = image_build.check_built(scratch)
            if parent_root is not None:
                argv = ["rsync", *RSYNC_COPY_FLAGS, f"--link-dest={parent_root}", f"{scratch}/", f"{new_root}/"]
                result = run_rsync(argv, None, "sharing unchanged files")
                if result.returncode != 0:
                    raise rsync_failure("sharing files with the previous version", result)
                shutil.rmtree(scratch)
            if progress is not None:
                progress(100, "done")
            return {
                **details,
                "mirror": mirror.uri,
                "packages": " ".join(all_packages),
                "node_files": "; ".join(changes),
            }

        return self._commit(settings, fill, "build")

    def derive(self, name: str, fill: Fill, packages: list[str]) -> VersionMeta:
        """A new version made from the current one by ``fill(new_root, current_root)`` (``pkg install|remove``,
        ``provision.image_packages_chroot``), the image's recorded packages set to ``packages``."""
        settings = replace(self._settings(name), packages=packages)
        if self.current(name) is None:
            raise NotFound(f"image {name!r} has no current version to change; build or fetch one first")
        return self._commit(settings, fill, "packages")

    # ---- changing what exists ------------------------------------------------------------------------------

    def diff(self, name: str, a: int | None = None, b: int | None = None, other: str | None = None) -> TreeDiff:
        """Differences between two versions of an image (default: the current one and its parent), or between
        the current versions of two images when ``other`` is given."""
        if other is not None:
            return diff_trees(self.current_root(name), self.current_root(other))
        self._settings(name)
        versions = self.versions(name)
        current = self.current(name)
        if b is None:
            b = current
        if b is None:
            raise NotFound(f"image {name!r} has no version yet")
        if a is None:
            a = self.meta(name, b).parent
            if a is None:
                older = [v for v in versions if v < b]
                if not older:
                    raise UserError(f"image {name!r} version {b} has no earlier version to compare with")
                a = older[-1]
        return diff_trees(self.version_root(name, a), self.version_root(name, b))

    def rollback(self, name: str, to: int | None = None) -> int:
        """Make an older version current: ``to``, or the one before the current version."""
        self._lock()
        self._settings(name)
        current = self.current(name)
        if to is None:
            older = [v for v in self.versions(name) if current is None or v < current]
            if not older:
                raise UserError(f"image {name!r} has no version older than {current} to roll back to")
            to = older[-1]
        self.meta(name, to)
        atomic_write(self._dir(name) / "current", f"{to}\n")
        return to

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Delete one version, or the whole image. Refuses to take the current version away from nodes that use
        the image. Returns the versions deleted."""
        self._lock()
        self._settings(name)
        current = self.current(name)
        users = self._in_use(self.state_dir, name)
        if version is None:
            if users:
                raise UserError(
                    f"image {name!r} is used by {len(users)} node(s) ({', '.join(users[:5])}); "
                    "assign them another image before deleting it"
                )
            deleted = self.versions(name)
            self._remove(self._dir(name))
            return deleted
        self.meta(name, version)
        if version == current:
            if users:
                raise UserError(
                    f"version {version} is the current version of image {name!r}, which node(s) "
                    f"{', '.join(users[:5])} use; roll back or fetch another version first"
                )
            if len(self.versions(name)) > 1:
                raise UserError(
                    f"version {version} is the current version of image {name!r}; roll back to another version "
                    "first (haoscar image rollback), or delete the whole image"
                )
        self._remove(self._dir(name) / "versions" / str(version))
        if version == current:
            (self._dir(name) / "current").unlink(missing_ok=True)
        return [version]

    @staticmethod
    def _remove(path: Path) -> None:
        # Rename first so that a half-deleted tree is never mistaken for a version.
        trash = path.with_name(f".deleting-{path.name}-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, trash)
            shutil.rmtree(trash)

    # Last in the class body: a method named ``list`` would shadow the builtin in annotations below it.
    def list(self) -> list[ImageSummary]:
        """Every image with its current version, settings and size."""
        return [self._summary(name) for name in self.names()]
