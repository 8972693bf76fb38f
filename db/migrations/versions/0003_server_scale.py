"""Self-hosted MTurk server at scale: indexed listing and worker polls.

Only for a database made before issue 19, whose 0001 created the sandbox_* tables: they now
belong to the server's own branch (mturk/server/migrations), which creates them with these
columns where they are missing. A database without them is left alone here.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DONE = ("Submitted", "Approved", "Rejected")
_INDEXES = {
    "ix_sandbox_hit_status_reviewable_at": ["status", "reviewable_at", "hit_id"],
    "ix_sandbox_hit_type_status_reviewable_at": [
        "hit_type_id",
        "status",
        "reviewable_at",
        "hit_id",
    ],
    "ix_sandbox_hit_status_created_at": ["status", "created_at", "hit_id"],
    "ix_sandbox_hit_is_open_expiration": ["is_open", "expiration", "hit_id"],
}


def _has_sandbox_hit() -> bool:
    return sa.inspect(op.get_bind()).has_table("sandbox_hit")


def upgrade() -> None:
    if not _has_sandbox_hit():
        return
    # Plain ADD COLUMN, not batch mode: on SQLite a batch copy would drop sandbox_hit, which
    # the assignments' foreign key forbids once there are rows.
    op.add_column(
        "sandbox_hit", sa.Column("n_done", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("sandbox_hit", sa.Column("pending_until", sa.Float(), nullable=True))
    op.add_column("sandbox_hit", sa.Column("full_until", sa.Float(), nullable=True))
    op.add_column(
        "sandbox_hit", sa.Column("reviewable_at", sa.Float(), nullable=False, server_default="0")
    )
    op.add_column(
        "sandbox_hit", sa.Column("is_open", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    _backfill()
    for name, cols in _INDEXES.items():
        op.create_index(name, "sandbox_hit", cols, unique=False)


def _backfill() -> None:
    """Derive the new columns of HITs that exist already (same rules as Store._sync)."""
    conn = op.get_bind()
    hit = sa.table(
        "sandbox_hit",
        sa.column("hit_id", sa.String),
        sa.column("status", sa.String),
        sa.column("max_assignments", sa.Integer),
        sa.column("expiration", sa.Float),
        sa.column("created_at", sa.Float),
        sa.column("n_done", sa.Integer),
        sa.column("pending_until", sa.Float),
        sa.column("full_until", sa.Float),
        sa.column("reviewable_at", sa.Float),
        sa.column("is_open", sa.Boolean),
    )
    asg = sa.table(
        "sandbox_assignment",
        sa.column("hit_id", sa.String),
        sa.column("status", sa.String),
        sa.column("deadline", sa.Float),
        sa.column("submit_time", sa.Float),
    )
    last = ""
    while True:
        rows = conn.execute(
            sa.select(hit.c.hit_id, hit.c.status, hit.c.max_assignments, hit.c.expiration)
            .where(hit.c.hit_id > last)
            .order_by(hit.c.hit_id)
            .limit(1000)
        ).all()
        if not rows:
            return
        last = rows[-1].hit_id
        ids = [r.hit_id for r in rows]
        per: dict[str, list] = {i: [] for i in ids}
        for a in conn.execute(
            sa.select(asg.c.hit_id, asg.c.status, asg.c.deadline, asg.c.submit_time).where(
                asg.c.hit_id.in_(ids)
            )
        ):
            per[a.hit_id].append(a)
        for r in rows:
            done = [a for a in per[r.hit_id] if a.status in DONE]
            deadlines = sorted(a.deadline for a in per[r.hit_id] if a.status == "Accepted")[::-1]
            left = r.max_assignments - len(done)
            pending = deadlines[0] if deadlines else None
            if left <= 0:
                at = max((a.submit_time or 0.0) for a in done)
            else:
                at = max(r.expiration, pending or r.expiration)
            conn.execute(
                hit.update()
                .where(hit.c.hit_id == r.hit_id)
                .values(
                    n_done=len(done),
                    pending_until=pending,
                    full_until=deadlines[left - 1] if 0 < left <= len(deadlines) else None,
                    reviewable_at=at,
                    is_open=r.status == "Assignable" and left > 0,
                )
            )


def downgrade() -> None:
    if not _has_sandbox_hit():
        return
    for name in _INDEXES:
        op.drop_index(name, table_name="sandbox_hit")
    for col in ("is_open", "reviewable_at", "full_until", "pending_until", "n_done"):
        op.drop_column("sandbox_hit", col)
