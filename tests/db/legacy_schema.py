"""The sandbox_* tables exactly as migration 0001 made them before issue 19 moved them out.

Run on a database at core revision 0001 or 0002 (before 0003 added sandbox_hit's derived
columns), it rebuilds what a deployment made by the previous schema holds, so tests can upgrade
such a database with today's two chains.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection


def create_pre_split_sandbox(conn: Connection) -> None:
    """The old 0001's sandbox statements, verbatim (alembic's autogenerate output)."""
    op = Operations(MigrationContext.configure(conn))
    op.create_table(
        "sandbox_account",
        sa.Column("access_key", sa.String(length=128), nullable=False),
        sa.Column("available_balance", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key", name=op.f("pk_sandbox_account")),
    )
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
    op.create_table(
        "sandbox_request_token",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_sandbox_request_token")),
    )
    op.create_table(
        "sandbox_worker_block",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_sandbox_worker_block")),
    )
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
