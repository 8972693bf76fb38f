"""Crowd-aware consensus (issue 16): insufficient_crowd labels, routing, per-synset crowd needs, gold.

* `label.decision` widens to 32 characters: "insufficient_crowd" (an item no eligible worker can
  still decide) does not fit 16.
* `worker.routing` says why routing stopped giving a worker work (uninformative / redundant;
  NULL: not routed away) and `worker.dependence_group` names the dependent group (its smallest
  worker id) the worker votes with, kept across synsets and runs.
* `consensus_synset`: per synset, the last consensus run's insufficient items and the crowd (of
  the measured skill) the set goal needs, for `imnet mturk status` and the review page.
* `gold_item`: gold promoted by `imnet mturk gold` from overrides and confident labels (capped).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label") as batch_op:
        batch_op.alter_column(
            "decision", existing_type=sa.String(length=16), type_=sa.String(length=32)
        )
    with op.batch_alter_table("worker") as batch_op:
        batch_op.add_column(sa.Column("routing", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("dependence_group", sa.String(length=64), nullable=True))
    op.create_table(
        "consensus_synset",
        sa.Column("wnid", sa.String(length=16), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("insufficient", sa.Integer(), nullable=False),
        sa.Column("crowd_needed", sa.Integer(), nullable=True),
        sa.Column("eligible_workers", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("wnid", name=op.f("pk_consensus_synset")),
    )
    op.create_table(
        "gold_item",
        sa.Column(
            "candidate_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("wnid", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("posterior", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidate.id"], name=op.f("fk_gold_item_candidate_id_candidate")
        ),
        sa.PrimaryKeyConstraint("candidate_id", name=op.f("pk_gold_item")),
    )
    op.create_index(op.f("ix_gold_item_wnid"), "gold_item", ["wnid"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_gold_item_wnid"), table_name="gold_item")
    op.drop_table("gold_item")
    op.drop_table("consensus_synset")
    with op.batch_alter_table("worker") as batch_op:
        batch_op.drop_column("dependence_group")
        batch_op.drop_column("routing")
    with op.batch_alter_table("label") as batch_op:
        batch_op.alter_column(
            "decision", existing_type=sa.String(length=32), type_=sa.String(length=16)
        )
