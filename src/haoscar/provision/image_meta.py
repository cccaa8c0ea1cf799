"""What the image store remembers about an image and each of its versions, as JSON beside the trees.

The store is self-describing: ``images/NAME/image.json`` holds the Fetch Image dialog's settings (IP assignment
method, post-install action) and ``images/NAME/versions/N/meta.json`` describes one version, so another tool (the
installer, the cluster database) can read the store without haoscar's code.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from haoscar.errors import FieldError, UserError
from haoscar.fsutil import atomic_write

IpAssignment = Literal["static", "dhcp"]
PostInstall = Literal["beep", "reboot", "shutdown"]
IP_ASSIGNMENTS: tuple[str, ...] = get_args(IpAssignment)
POST_INSTALLS: tuple[str, ...] = get_args(PostInstall)

# The same rule as a host name label in the cluster spec, so that every stored image can be named there.
_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise FieldError(  # the request field ``name`` (sep None: the message reads as it always did)
            "name",
            f"{name!r} is not a valid image name; use 1-63 lowercase letters, digits and inner hyphens, "
            "e.g. serverimage or compute-bookworm",
            sep=None,
        )
    return name


def check_ip_assignment(value: str) -> IpAssignment:
    if value not in IP_ASSIGNMENTS:
        detail = f"IP assignment method {value!r} is unknown; use one of: {', '.join(IP_ASSIGNMENTS)}"
        raise FieldError("ip_assignment", detail, sep=None)
    return cast(IpAssignment, value)


def check_post_install(value: str) -> PostInstall:
    if value not in POST_INSTALLS:
        detail = f"post-install action {value!r} is unknown; use one of: {', '.join(POST_INSTALLS)}"
        raise FieldError("post_install", detail, sep=None)
    return cast(PostInstall, value)


@dataclass(frozen=True)
class ImageSettings:
    """``image.json``: the image-level settings that every new version inherits."""

    name: str
    ip_assignment: IpAssignment = "static"
    post_install: PostInstall = "beep"
    exclude_file: str | None = None
    source: str = ""
    next_version: int = 1
    # Packages beyond a build's base set that the image holds: from the spec or `image build --packages`, plus
    # `pkg install`, minus `pkg remove`; a rebuild installs them again (docs/packages.md).
    packages: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageSettings:
        return cls(
            name=str(data["name"]),
            ip_assignment=check_ip_assignment(str(data.get("ip_assignment", "static"))),
            post_install=check_post_install(str(data.get("post_install", "beep"))),
            exclude_file=data.get("exclude_file"),
            source=str(data.get("source", "")),
            next_version=int(data.get("next_version", 1)),
            packages=[str(p) for p in data.get("packages", [])],
        )


@dataclass(frozen=True)
class VersionMeta:
    """``versions/N/meta.json``: how one version was made and how big it is."""

    version: int
    created: str
    source: str
    ip_assignment: IpAssignment
    post_install: PostInstall
    files: int
    bytes: int
    new_bytes: int
    parent: int | None
    method: Literal["fetch", "build", "import", "packages"] = "fetch"
    details: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionMeta:
        parent = data.get("parent")
        return cls(
            version=int(data["version"]),
            created=str(data["created"]),
            source=str(data.get("source", "")),
            ip_assignment=check_ip_assignment(str(data.get("ip_assignment", "static"))),
            post_install=check_post_install(str(data.get("post_install", "beep"))),
            files=int(data.get("files", 0)),
            bytes=int(data.get("bytes", 0)),
            new_bytes=int(data.get("new_bytes", 0)),
            parent=None if parent is None else int(parent),
            method=data.get("method", "fetch"),
            details={str(k): str(v) for k, v in dict(data.get("details", {})).items()},
        )


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}); restore it or delete the image") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object; restore it or delete the image")
    return data


def write_json(path: Path, obj: ImageSettings | VersionMeta) -> None:
    atomic_write(path, json.dumps(asdict(obj), indent=2) + "\n")
