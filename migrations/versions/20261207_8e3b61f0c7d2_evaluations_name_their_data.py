"""evaluations name their data; the registry's own evaluation requests

Revision ID: 8e3b61f0c7d2
Revises: 5c1d7a9e2b40
Create Date: 2026-12-07 10:00:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import partsbin.registry.db.models

revision: str = "8e3b61f0c7d2"
down_revision: str | Sequence[str] | None = "5c1d7a9e2b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Details that mark a measurement on other data than the extractor's own test set.
_OTHER_DATA = ("finetune_steps", "uda", "transfer", "via")


def upgrade() -> None:
    op.create_table(
        "evaluation_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extractor_id", sa.Integer(), nullable=False),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", partsbin.registry.db.models.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["extractor_id"],
            ["components.id"],
            name=op.f("fk_evaluation_requests_extractor_id_components"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["head_id"], ["components.id"], name=op.f("fk_evaluation_requests_head_id_components"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_evaluation_requests_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_requests")),
        sa.UniqueConstraint("extractor_id", "head_id", name="uq_evaluation_requests_pair"),
    )
    with op.batch_alter_table("evaluation_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluation_requests_head_id"), ["head_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluation_requests_job_id"), ["job_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=16), server_default="user", nullable=False))
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_digest", sa.String(length=71), nullable=True))
        batch_op.add_column(sa.Column("own_test", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Evaluations posted before this revision named their data by a free string only. Those
    # of the benchmark's own kind (recombination accuracy, none of the marks of a
    # transfer curve, an adaptation row or a bridged path) keep ranking as they did; the
    # rest are what they always were, measurements on other data.
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, metric, details FROM evaluations")).all()
    for eid, metric, details in rows:
        d = json.loads(details) if isinstance(details, str) else (details or {})
        if metric == "recombination_accuracy" and not any(d.get(k) is not None for k in _OTHER_DATA):
            bind.execute(sa.text("UPDATE evaluations SET own_test = :t WHERE id = :i"), {"t": True, "i": eid})


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("own_test")
        batch_op.drop_column("data_digest")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("origin")
    with op.batch_alter_table("evaluation_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluation_requests_job_id"))
        batch_op.drop_index(batch_op.f("ix_evaluation_requests_head_id"))
    op.drop_table("evaluation_requests")
