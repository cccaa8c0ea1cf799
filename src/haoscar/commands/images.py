"""``haoscar image ...``: the client image store (SystemImager's si_getimage / si_lsimage / si_rmimage).

Every operation is ``op(env, request) -> report``; long copies report their progress through ``env.meter``.
The store refuses to delete an image that a node definition still uses (the database is asked, see
:func:`haoscar.commands.wiring.image_store`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision.image_diff import TreeDiff
from haoscar.provision.image_meta import IP_ASSIGNMENTS, POST_INSTALLS, VersionMeta
from haoscar.provision.images import FetchRequest, ImageDetails, ImageStore, ImageSummary
from haoscar.provision.sshkeys import ensure_identity
from haoscar.spec import load_spec

__all__ = [
    "IP_ASSIGNMENTS",
    "POST_INSTALLS",
    "BuildImage",
    "DeleteImage",
    "DiffImages",
    "FetchRequest",
    "ImageDeleted",
    "ImageDetails",
    "ImageDiff",
    "ImageList",
    "ImageSummary",
    "ImportImage",
    "ListImages",
    "PublicKey",
    "RollbackImage",
    "RolledBack",
    "ShowImage",
    "ShowSshKey",
    "TreeDiff",
    "VersionMeta",
    "image_build",
    "image_delete",
    "image_diff",
    "image_fetch",
    "image_import",
    "image_list",
    "image_rollback",
    "image_show",
    "image_ssh_key",
]


def image_store(state_dir: Path) -> ImageStore:
    # The wiring opens the database (SQLAlchemy) only when asked: imported here so that `haoscar image --help`
    # and the CLI's start-up do not load it.
    from haoscar.commands.wiring import image_store as wired

    return wired(state_dir)


@dataclass(frozen=True)
class ListImages:
    """Every image of the store."""


@dataclass(frozen=True)
class ImageList:
    images: list[ImageSummary]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(image) for image in self.images]


def image_list(env: Env, request: ListImages) -> ImageList:
    return ImageList(image_store(env.state_dir).list())


@dataclass(frozen=True)
class ShowImage:
    name: str


def image_show(env: Env, request: ShowImage) -> ImageDetails:
    """An image's settings and every version (``ImageDetails``: summary, versions, root)."""
    return image_store(env.state_dir).show(request.name)


@dataclass(frozen=True)
class DiffImages:
    """Two versions of one image (``older`` default: the parent of ``newer``; ``newer`` default: the current one),
    or, when ``other_image`` is given, the current trees of two images."""

    name: str
    older: int | None = None
    newer: int | None = None
    other_image: str | None = None


@dataclass(frozen=True)
class ImageDiff:
    name: str
    older: str  # what the diff starts from: a version number, "parent" or another image's name
    newer: str
    diff: TreeDiff

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.diff.added, "removed": self.diff.removed, "changed": self.diff.changed}


def image_diff(env: Env, request: DiffImages) -> ImageDiff:
    store = image_store(env.state_dir)
    if request.other_image is not None:
        result = store.diff(request.name, other=request.other_image)
        return ImageDiff(request.name, request.other_image, "", result)
    result = store.diff(request.name, request.older, request.newer)
    older = "parent" if request.older is None else str(request.older)
    newer = "current" if request.newer is None else str(request.newer)
    return ImageDiff(request.name, older, newer, result)


@dataclass(frozen=True)
class RollbackImage:
    name: str
    to: int | None = None  # default: the version before the current one


@dataclass(frozen=True)
class RolledBack:
    name: str
    current: int


def image_rollback(env: Env, request: RollbackImage) -> RolledBack:
    return RolledBack(request.name, image_store(env.state_dir).rollback(request.name, request.to))


@dataclass(frozen=True)
class DeleteImage:
    name: str
    version: int | None = None  # None: the whole image


@dataclass(frozen=True)
class ImageDeleted:
    name: str
    versions: list[int]
    whole_image: bool


def image_delete(env: Env, request: DeleteImage) -> ImageDeleted:
    deleted = image_store(env.state_dir).delete(request.name, request.version)
    return ImageDeleted(request.name, deleted, request.version is None)


def image_fetch(env: Env, request: FetchRequest) -> VersionMeta:
    """Pull a golden client's file system over rsync/ssh into a new version."""
    return image_store(env.state_dir).fetch(request, progress=env.meter)


@dataclass(frozen=True)
class BuildImage:
    name: str
    suite: str = "bookworm"
    packages: list[str] = field(default_factory=list)  # extra packages (a kernel and sshd are always in)
    ip_assignment: str | None = None
    post_install: str | None = None
    spec: Path | None = None  # a cluster.yaml: the suite, packages and settings of its images[] entry ``name``


def _from_spec(request: BuildImage) -> BuildImage:
    """The build the spec's image of that name asks for (``debootstrap:SUITE``, its ``packages`` with the request's)."""
    assert request.spec is not None
    spec = load_spec(request.spec)
    image = next((image for image in spec.images if image.name == request.name), None)
    if image is None:
        known = ", ".join(image.name for image in spec.images) or "none"
        raise FieldNotFound(
            "name", f"{request.name!r} is not an image of {request.spec}; its images: {known}", sep=": "
        )
    kind, _, suite = image.source.partition(":")
    if kind != "debootstrap" or not suite:
        detail = f"image {image.name} of {request.spec} has source {image.source!r}; only debootstrap:SUITE is built"
        raise FieldError("spec", detail, sep=": ")
    return replace(
        request,
        suite=suite,
        packages=[*image.packages, *request.packages],
        ip_assignment=request.ip_assignment or image.ip_assignment,
        post_install=request.post_install or image.post_install,
    )


def image_build(env: Env, request: BuildImage) -> VersionMeta:
    """Build a Debian image with debootstrap into a new version (with ``spec``: as the spec's image says)."""
    if request.spec is not None:
        request = _from_spec(request)
    return image_store(env.state_dir).build(
        request.name,
        suite=request.suite,
        packages=list(request.packages),
        ip_assignment=request.ip_assignment,
        post_install=request.post_install,
        progress=env.meter,
    )


@dataclass(frozen=True)
class ImportImage:
    name: str
    directory: Path
    ip_assignment: str | None = None
    post_install: str | None = None


def image_import(env: Env, request: ImportImage) -> VersionMeta:
    """Copy a local root tree into a new version."""
    return image_store(env.state_dir).import_tree(
        request.name,
        request.directory,
        ip_assignment=request.ip_assignment,
        post_install=request.post_install,
        progress=env.meter,
    )


@dataclass(frozen=True)
class ShowSshKey:
    """haoscar's own ssh identity (created on first use)."""


@dataclass(frozen=True)
class PublicKey:
    public_key: str


def image_ssh_key(env: Env, request: ShowSshKey) -> PublicKey:
    return PublicKey(ensure_identity(env.state_dir).public_key)
