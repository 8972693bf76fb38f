"""Per-synset worker verdicts: sharded consensus runs refresh routing without undoing each other.

`worker_verdict` holds, per (synset, worker), what that synset's last consensus fit said: flagged
uninformative, the dependent group found there, the worker's skill there (wnid "*": the
crowd-wide dependence pass). A run replaces the rows of the synsets it decided and recomputes
`worker.routing` / `worker.dependence_group` from all rows. Before, a partial run (`--shard`, a
few synsets) could only add verdicts: a worker once routed away stayed so until a complete run.
The verdicts an existing database holds are kept as rows of a pseudo-synset "~" (no run decides
it, so only a complete run, which re-tests the whole crowd, removes them).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_verdict",
        sa.Column("wnid", sa.String(length=16), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("uninformative", sa.Boolean(), nullable=False),
        sa.Column("dependence_group", sa.String(length=64), nullable=True),
        sa.Column("skill", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("wnid", "worker_id", name=op.f("pk_worker_verdict")),
    )
    op.create_index(
        op.f("ix_worker_verdict_worker_id"), "worker_verdict", ["worker_id"], unique=False
    )
    worker = sa.table(
        "worker",
        sa.column("worker_id", sa.String),
        sa.column("routing", sa.String),
        sa.column("dependence_group", sa.String),
    )
    verdict = sa.table(
        "worker_verdict",
        sa.column("wnid", sa.String),
        sa.column("worker_id", sa.String),
        sa.column("uninformative", sa.Boolean),
        sa.column("dependence_group", sa.String),
        sa.column("skill", sa.Float),
    )
    # The member of a group who kept getting work (routing NULL) stays its best (skill 1).
    kept = sa.case((worker.c.routing.is_(None), 1.0), else_=0.0)
    old = sa.select(
        sa.literal("~"),
        worker.c.worker_id,
        sa.case((worker.c.routing == "uninformative", sa.true()), else_=sa.false()),
        worker.c.dependence_group,
        kept,
    ).where(sa.or_(worker.c.routing.is_not(None), worker.c.dependence_group.is_not(None)))
    op.execute(
        verdict.insert().from_select(
            ["wnid", "worker_id", "uninformative", "dependence_group", "skill"], old
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_verdict_worker_id"), table_name="worker_verdict")
    op.drop_table("worker_verdict")
