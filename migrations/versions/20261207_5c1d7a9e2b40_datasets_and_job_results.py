"""datasets and job results

Revision ID: 5c1d7a9e2b40
Revises: 9912442cf5aa
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partsbin.registry.db.models

revision: str = "5c1d7a9e2b40"
down_revision: str | Sequence[str] | None = "9912442cf5aa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("created_at", partsbin.registry.db.models.Timestamp(timezone=True), nullable=False),
        sa.Column("published_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["published_by"], ["tokens.id"], name=op.f("fk_datasets_published_by_tokens"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("namespace", "name", "digest", name="uq_datasets_namespace_name_digest"),
        sa.UniqueConstraint("namespace", "name", "version", name="uq_datasets_namespace_name_version"),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_digest"), ["digest"], unique=False)
        batch_op.create_index(batch_op.f("ix_datasets_namespace"), ["namespace"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("error_detail", sa.Text(), nullable=True))
    # Failures recorded before this revision kept the worker's whole traceback as the
    # error every reader saw: the traceback moves to error_detail (admins only), the
    # error keeps its last line (the exception's message).
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, error FROM jobs WHERE error IS NOT NULL")).all()
    for job_id, error in rows:
        lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
        if len(lines) > 1:
            bind.execute(
                sa.text("UPDATE jobs SET error = :e, error_detail = :d WHERE id = :i"),
                {"e": lines[-1][:2000], "d": error, "i": job_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("error_detail")
        batch_op.drop_column("result")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_namespace"))
        batch_op.drop_index(batch_op.f("ix_datasets_digest"))
    op.drop_table("datasets")
