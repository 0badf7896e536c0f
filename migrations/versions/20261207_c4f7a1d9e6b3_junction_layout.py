"""junctions say their layout: spatial (N×C×H×W) or tokens (N×T×D)

Revision ID: c4f7a1d9e6b3
Revises: 3a8cd2dede16
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4f7a1d9e6b3"
down_revision: str | Sequence[str] | None = "3a8cd2dede16"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every junction stored before this revision is a CNN's: the server default says so.
_TABLES = ("components", "memberships", "groups")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("junction_layout", sa.String(length=8), server_default="spatial", nullable=False)
            )


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("junction_layout")
