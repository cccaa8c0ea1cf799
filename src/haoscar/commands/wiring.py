"""Where the layers below ``commands`` are plugged into each other (the composition root of every process).

``haoscar.db`` must not know ``haoscar.replication`` or ``haoscar.provision``, and those must not know each other;
what one needs of another is injected here, one function per seam:

- :func:`open_cluster_database`: the database with replication's commit hook attached, so every write on the
  active head is on the standby before it commits (a no-op on a machine that does not replicate);
- :func:`image_store`: the image store asking the database which nodes use an image before deleting it;
- :func:`store_images`: the image store's entries, as ``haoscar.db.images`` takes them (plain values).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from haoscar.db.session import Database, open_database
from haoscar.replication.dbhook import attach_if_replicating

if TYPE_CHECKING:  # the image store is loaded by the commands that use it, not by every command's start-up
    from haoscar.provision.images import ImageStore, ImageSummary


def open_cluster_database(state_dir: Path | str, *, upgrade: bool = True) -> Database:
    """The cluster database as every haoscar process opens it: while this head's replication runs as the source,
    each write transaction (a schema upgrade too) is shipped to the standby before it commits."""
    return open_database(state_dir, upgrade=upgrade, on_open=(attach_if_replicating,))


def image_store(state_dir: Path) -> ImageStore:
    """The image store of ``state_dir``, refusing to delete an image that a node definition still uses."""
    from haoscar.db.images import nodes_using_image
    from haoscar.provision.images import ImageStore

    return ImageStore(state_dir, in_use=nodes_using_image)


def store_images(state_dir: Path) -> list[ImageSummary]:
    """The images in the store of ``state_dir`` (none when there is no store yet)."""
    from haoscar.provision.images import ImageStore

    return ImageStore(state_dir).list()
