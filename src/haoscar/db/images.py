"""Image rows: the spec's images and the image store's, so that client definitions can name either."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Image
from haoscar.db.session import Database
from haoscar.errors import NotFound


def _store_entries(state_dir: Path) -> list[Any]:
    """What ``haoscar.provision.images.ImageStore(state_dir).list()`` holds, or nothing when no store exists."""
    try:
        module = importlib.import_module("haoscar.provision.images")
    except ImportError:
        return []
    store_class = getattr(module, "ImageStore", None)
    if store_class is None:
        return []
    return list(store_class(state_dir).list())


def _field(entry: Any, name: str) -> Any:
    """Read a field from a store entry, whether it carries it directly or in its ``settings``."""
    if isinstance(entry, str):
        return entry if name == "name" else None
    if isinstance(entry, dict):
        return entry.get(name)
    value = getattr(entry, name, None)
    if value is None and hasattr(entry, "settings"):
        value = getattr(entry.settings, name, None)
    return value


def sync_images_in(session: Session, state_dir: Path) -> list[str]:
    """Upsert image rows for every image in the store; returns the names added."""
    added = []
    existing = {image.name: image for image in session.scalars(select(Image))}
    for entry in _store_entries(state_dir):
        name = _field(entry, "name")
        if not name:
            continue
        values = {
            key: str(value)
            for key in ("source", "ip_assignment", "post_install")
            if (value := _field(entry, key)) is not None
        }
        image = existing.get(str(name))
        if image is None:
            session.add(Image(name=str(name), from_spec=False, **values))
            added.append(str(name))
            continue
        for key, value in values.items():
            if value and getattr(image, key) != value:
                setattr(image, key, value)
    return added


def sync_images_from_store(db: Database, state_dir: Path | None = None) -> list[str]:
    """Make every image of the image store known to the database (spec images are there from ``spec apply``)."""
    with db.session() as session:
        return sync_images_in(session, state_dir or db.state_dir)


def image_named(session: Session, name: str, state_dir: Path, *, option: str = "--image") -> Image:
    """The image row called ``name``, looking in the image store too; NotFound lists the images there are."""
    image = session.scalar(select(Image).where(Image.name == name))
    if image is None:
        sync_images_in(session, state_dir)
        session.flush()
        image = session.scalar(select(Image).where(Image.name == name))
    if image is None:
        known = sorted(session.scalars(select(Image.name)))
        hint = f"known images: {', '.join(known)}" if known else "there are none yet; build one or apply a spec"
        raise NotFound(f"{option}: unknown image {name!r}; {hint}")
    return image


def nodes_using_image(state_dir: Path, name: str) -> list[str]:
    """Names of the nodes whose image is ``name``; none when no database exists yet (nothing is created)."""
    from haoscar.db.models import Node
    from haoscar.db.session import DB_FILE, open_database

    if not (Path(state_dir) / DB_FILE).exists():
        return []
    db = open_database(state_dir)
    try:
        with db.session(readonly=True) as session:
            names = list(session.scalars(select(Node.name).join(Node.image).where(Image.name == name)))
    finally:
        db.close()
    return sorted(names, key=_natural)


def _natural(name: str) -> tuple[Any, ...]:
    """node2 before node10, as ClusterShell sorts."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))
