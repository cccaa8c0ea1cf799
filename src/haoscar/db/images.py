"""Image rows: the spec's images and the image store's, so that client definitions can name either."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.constants import DB_FILE
from haoscar.db.models import Image
from haoscar.db.session import Database, open_database
from haoscar.errors import FieldNotFound
from haoscar.spec.nodes import sorted_nodes


class StoredImage(Protocol):
    """An image of the image store as this package needs it (``haoscar.provision.images.ImageSummary`` is one).

    The store lives in ``haoscar.provision``, above this package: the layers above pass its entries in (see
    ``haoscar.commands.wiring.store_images``) instead of this package importing it."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def ip_assignment(self) -> str: ...

    @property
    def post_install(self) -> str: ...


StoredImages = Callable[[], Iterable[StoredImage]]
"""The store's images, read only when needed (most lookups find the row without asking the store)."""


def sync_images_in(session: Session, stored: Iterable[StoredImage]) -> list[str]:
    """Upsert image rows for every image in the store; returns the names added."""
    added = []
    existing = {image.name: image for image in session.scalars(select(Image))}
    for entry in stored:
        if not entry.name:
            continue
        values = {
            key: str(value)
            for key in ("source", "ip_assignment", "post_install")
            if (value := getattr(entry, key)) is not None
        }
        image = existing.get(entry.name)
        if image is None:
            session.add(Image(name=entry.name, from_spec=False, **values))
            added.append(entry.name)
            continue
        for key, value in values.items():
            if value and getattr(image, key) != value:
                setattr(image, key, value)
    return added


def sync_images_from_store(db: Database, stored: Iterable[StoredImage]) -> list[str]:
    """Make every image of the image store known to the database (spec images are there from ``spec apply``)."""
    with db.session() as session:
        return sync_images_in(session, stored)


def image_named(session: Session, name: str, stored: StoredImages, *, field: str = "image") -> Image:
    """The image row called ``name`` (the request's ``field``), looking in the image store too; NotFound lists the
    images there are."""
    image = session.scalar(select(Image).where(Image.name == name))
    if image is None:
        sync_images_in(session, stored())
        session.flush()
        image = session.scalar(select(Image).where(Image.name == name))
    if image is None:
        known = sorted(session.scalars(select(Image.name)))
        hint = f"known images: {', '.join(known)}" if known else "there are none yet; build one or apply a spec"
        raise FieldNotFound(field, f"unknown image {name!r}; {hint}", sep=": ")
    return image


def nodes_using_image(state_dir: Path, name: str) -> list[str]:
    """Names of the nodes whose image is ``name``; none when no database exists yet (nothing is created)."""
    from haoscar.db.models import Node

    if not (Path(state_dir) / DB_FILE).exists():
        return []
    db = open_database(state_dir)
    try:
        with db.session(readonly=True) as session:
            names = list(session.scalars(select(Node.name).join(Node.image).where(Image.name == name)))
    finally:
        db.close()
    return sorted_nodes(names)
