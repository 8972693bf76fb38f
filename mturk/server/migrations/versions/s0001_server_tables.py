"""Server tables: the self-hosted MTurk server's sandbox_* tables, created where none exist.

Until issue 19 the core chain made them (0001, and 0003's derived sandbox_hit columns), so a
database from then already has them, in this very shape: each table is created only if missing,
and such a database keeps its rows.

Revision ID: s0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = ("server",)
depends_on = None

_HIT_INDEXES = {
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


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in _TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)


def _sandbox_account() -> None:
    op.create_table(
        "sandbox_account",
        sa.Column("access_key", sa.String(length=128), nullable=False),
        sa.Column("available_balance", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key", name=op.f("pk_sandbox_account")),
    )


def _sandbox_bonus() -> None:
    op.create_table(
        "sandbox_bonus",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("assignment_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_bonus")),
    )
    with op.batch_alter_table("sandbox_bonus", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_bonus_assignment_id"), ["assignment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sandbox_bonus_worker_id"), ["worker_id"], unique=False)


def _sandbox_hit_type() -> None:
    op.create_table(
        "sandbox_hit_type",
        sa.Column("hit_type_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=True),
        sa.Column("reward", sa.String(length=16), nullable=False),
        sa.Column("assignment_duration", sa.Integer(), nullable=False),
        sa.Column("auto_approval_delay", sa.Integer(), nullable=False),
        sa.Column("qualification_requirements", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hit_type_id", name=op.f("pk_sandbox_hit_type")),
    )


def _sandbox_hit() -> None:
    op.create_table(
        "sandbox_hit",
        sa.Column("hit_id", sa.String(length=64), nullable=False),
        sa.Column("hit_type_id", sa.String(length=64), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("max_assignments", sa.Integer(), nullable=False),
        sa.Column("expiration", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("review_status", sa.String(length=32), nullable=False),
        sa.Column("requester_annotation", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        # Derived columns (were migration 0003 of the core chain): see SandboxHit.
        sa.Column("n_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pending_until", sa.Float(), nullable=True),
        sa.Column("full_until", sa.Float(), nullable=True),
        sa.Column("reviewable_at", sa.Float(), nullable=False, server_default="0"),
        sa.Column("is_open", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.ForeignKeyConstraint(
            ["hit_type_id"],
            ["sandbox_hit_type.hit_type_id"],
            name=op.f("fk_sandbox_hit_hit_type_id_sandbox_hit_type"),
        ),
        sa.PrimaryKeyConstraint("hit_id", name=op.f("pk_sandbox_hit")),
    )
    with op.batch_alter_table("sandbox_hit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_hit_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_hit_expiration"), ["expiration"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sandbox_hit_hit_type_id"), ["hit_type_id"], unique=False
        )
    for name, cols in _HIT_INDEXES.items():
        op.create_index(name, "sandbox_hit", cols, unique=False)


def _sandbox_assignment() -> None:
    op.create_table(
        "sandbox_assignment",
        sa.Column("assignment_id", sa.String(length=64), nullable=False),
        sa.Column("hit_id", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("accept_time", sa.Float(), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("submit_time", sa.Float(), nullable=True),
        sa.Column("auto_approval_time", sa.Float(), nullable=True),
        sa.Column("approval_time", sa.Float(), nullable=True),
        sa.Column("rejection_time", sa.Float(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("requester_feedback", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["hit_id"],
            ["sandbox_hit.hit_id"],
            name=op.f("fk_sandbox_assignment_hit_id_sandbox_hit"),
        ),
        sa.PrimaryKeyConstraint("assignment_id", name=op.f("pk_sandbox_assignment")),
        sa.UniqueConstraint(
            "hit_id", "worker_id", name=op.f("uq_sandbox_assignment_hit_id_worker_id")
        ),
    )
    with op.batch_alter_table("sandbox_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_assignment_hit_id"), ["hit_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sandbox_assignment_worker_id"), ["worker_id"], unique=False
        )


def _sandbox_notification() -> None:
    op.create_table(
        "sandbox_notification",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_notification")),
    )
    with op.batch_alter_table("sandbox_notification", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_notification_worker_id"), ["worker_id"], unique=False
        )


def _sandbox_qualification_type() -> None:
    op.create_table(
        "sandbox_qualification_type",
        sa.Column("qualification_type_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("auto_granted", sa.Boolean(), nullable=False),
        sa.Column("auto_granted_value", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "qualification_type_id", name=op.f("pk_sandbox_qualification_type")
        ),
        sa.UniqueConstraint("name", name=op.f("uq_sandbox_qualification_type_name")),
    )


def _sandbox_worker_qualification() -> None:
    op.create_table(
        "sandbox_worker_qualification",
        sa.Column("qualification_type_id", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("integer_value", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("grant_time", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["qualification_type_id"],
            ["sandbox_qualification_type.qualification_type_id"],
            name=op.f(
                "fk_sandbox_worker_qualification_qualification_type_id_sandbox_qualification_type"
            ),
        ),
        sa.PrimaryKeyConstraint(
            "qualification_type_id", "worker_id", name=op.f("pk_sandbox_worker_qualification")
        ),
    )


def _sandbox_request_token() -> None:
    op.create_table(
        "sandbox_request_token",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_sandbox_request_token")),
    )


def _sandbox_worker_block() -> None:
    op.create_table(
        "sandbox_worker_block",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_sandbox_worker_block")),
    )


# In foreign-key order: a table after those it refers to.
_TABLES = {
    "sandbox_account": _sandbox_account,
    "sandbox_bonus": _sandbox_bonus,
    "sandbox_hit_type": _sandbox_hit_type,
    "sandbox_hit": _sandbox_hit,
    "sandbox_assignment": _sandbox_assignment,
    "sandbox_notification": _sandbox_notification,
    "sandbox_qualification_type": _sandbox_qualification_type,
    "sandbox_worker_qualification": _sandbox_worker_qualification,
    "sandbox_request_token": _sandbox_request_token,
    "sandbox_worker_block": _sandbox_worker_block,
}
