"""The initial cluster database: networks, images, groups, nodes, interfaces, MAC sightings, events, settings.

Generated with Alembic's autogenerate against an empty SQLite database from ``haoscar.db.models`` and reviewed;
``tests/unit/db/test_schema.py`` checks that it still matches the models.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 15:52:44.033817
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema (in the order autogenerate wrote it: referenced tables first)."""
    _events_and_images()
    _sightings_networks_settings()
    _groups_and_nodes()
    _interfaces()


def _events_and_images() -> None:
    """Create the events (with their indexes) and images."""
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_ts"), ["ts"], unique=False)

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("ip_assignment", sa.String(length=8), nullable=False),
        sa.Column("post_install", sa.String(length=8), nullable=False),
        sa.Column("from_spec", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def _sightings_networks_settings() -> None:
    """Create the MAC sightings, networks and settings."""
    op.create_table(
        "mac_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("interface", sa.String(length=15), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("client_arch", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mac"),
    )
    op.create_table(
        "networks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("subnet", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=15), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def _groups_and_nodes() -> None:
    """Create the client groups and nodes (they name images)."""
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("base_name", sa.String(length=63), nullable=True),
        sa.Column("start_number", sa.Integer(), nullable=True),
        sa.Column("padding", sa.Integer(), nullable=True),
        sa.Column("nodeset", sa.Text(), nullable=True),
        sa.Column("netmask", sa.String(length=15), nullable=True),
        sa.Column("gateway", sa.String(length=15), nullable=True),
        sa.Column("interface", sa.String(length=15), nullable=True),
        sa.Column("from_spec", sa.Boolean(), nullable=False),
        sa.Column("start_ip", sa.String(length=15), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("boot_mode", sa.String(length=9), nullable=False),
        sa.Column("install_state", sa.String(length=12), nullable=False),
        sa.Column("install_detail", sa.Text(), nullable=False),
        sa.Column("from_spec", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def _interfaces() -> None:
    """Create the interfaces (they belong to nodes)."""
    op.create_table(
        "interfaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=15), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("ip", sa.String(length=15), nullable=False),
        sa.Column("prefix", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ip"),
        sa.UniqueConstraint("mac"),
        sa.UniqueConstraint("node_id", "name"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("interfaces")
    op.drop_table("nodes")
    op.drop_table("groups")
    op.drop_table("settings")
    op.drop_table("networks")
    op.drop_table("mac_sightings")
    op.drop_table("images")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_ts"))
        batch_op.drop_index(batch_op.f("ix_events_kind"))

    op.drop_table("events")
