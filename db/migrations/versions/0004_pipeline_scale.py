"""Pipeline at scale: set-based curation, per-synset consensus, publish/collect batching.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# mturk publish/collect (mturk/planning.py, mturk/collect.py): HITs by status, the unreviewed
# assignments by key, a batch's prior votes by item.
_MTURK_INDEXES = {
    "ix_hit_status": ("hit", ["status"]),
    "ix_assignment_reviewed_at": ("assignment", ["reviewed_at", "assignment_id"]),
    "ix_vote_candidate_id_worker_id": ("vote", ["candidate_id", "worker_id"]),
}


def upgrade() -> None:
    for name, (table, cols) in _MTURK_INDEXES.items():
        op.create_index(name, table, cols, unique=False)


def downgrade() -> None:
    for name, (table, _cols) in _MTURK_INDEXES.items():
        op.drop_index(name, table_name=table)
