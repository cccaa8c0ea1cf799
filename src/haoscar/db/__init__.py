"""The cluster database: SQLAlchemy models, sessions and Alembic migrations."""

from __future__ import annotations

from pathlib import Path


def nodes_using_image(state_dir: Path, name: str) -> list[str]:
    """Names of the nodes that use image ``name`` (the image store asks before deleting an image)."""
    from haoscar.db.images import nodes_using_image as lookup

    return lookup(state_dir, name)
