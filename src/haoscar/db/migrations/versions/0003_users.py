"""Cluster-wide accounts: the users and groups `haoscar user add` keeps the same on every host (issue 12, item 3).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "user_groups",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("gid", sa.Integer(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("gid"),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(length=32), nullable=False),
        sa.Column("shell", sa.String(length=255), nullable=False),
        sa.Column("comment", sa.String(length=255), nullable=False),
        sa.Column("home", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["user_groups.name"]),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("uid"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("users")
    op.drop_table("user_groups")
