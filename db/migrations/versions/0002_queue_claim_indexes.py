"""Indexes for O(log n) work-queue claims (db/queue.py).

Expired leases are claimed on (status, lease_until) and pending rows on (status, id), one index range
scan each. The query table's plain status index gives way to (status, id), which serves the same
lookups and also PostgreSQL's ORDER BY id (SQLite's index carries the rowid, PostgreSQL's does not).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_candidate_status_lease_until", "candidate", ["status", "lease_until"], unique=False
    )
    op.create_index("ix_query_status_id", "query", ["status", "id"], unique=False)
    op.create_index("ix_query_status_lease_until", "query", ["status", "lease_until"], unique=False)
    op.drop_index("ix_query_status", table_name="query")


def downgrade() -> None:
    op.create_index("ix_query_status", "query", ["status"], unique=False)
    op.drop_index("ix_query_status_lease_until", table_name="query")
    op.drop_index("ix_query_status_id", table_name="query")
    op.drop_index("ix_candidate_status_lease_until", table_name="candidate")
