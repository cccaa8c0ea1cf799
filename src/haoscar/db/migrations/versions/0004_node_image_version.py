"""The image version each node runs: set by the installer's completion report and by `haoscar node sync` (issue 12,
item 6); `node list` shows it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("image_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("image_version")
