"""sandbox_hit_type_requirement: each HIT type's Exists requirements, for the worker poll's SQL filter.

Existing HIT types are backfilled from their qualification_requirements JSON, in batches.

Revision ID: s0003
Revises: s0002
"""

import sqlalchemy as sa
from alembic import op

revision = "s0003"
down_revision = "s0002"
branch_labels = None
depends_on = None

BATCH = 5_000


def _requiring(reqs: list | None) -> set[str]:
    # As mturk.server.common.requiring at this revision (a migration keeps its own copy).
    out = set()
    for r in reqs or []:
        qid = str(r.get("QualificationTypeId", ""))
        system = qid.startswith("00000000000000000") or qid.startswith(
            "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"
        )
        if r.get("Comparator") == "Exists" and not system:
            out.add(qid)
    return out


def upgrade() -> None:
    table = op.create_table(
        "sandbox_hit_type_requirement",
        sa.Column("hit_type_id", sa.String(length=64), nullable=False),
        sa.Column("qualification_type_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["hit_type_id"],
            ["sandbox_hit_type.hit_type_id"],
            name=op.f("fk_sandbox_hit_type_requirement_hit_type_id_sandbox_hit_type"),
        ),
        sa.PrimaryKeyConstraint(
            "hit_type_id", "qualification_type_id", name=op.f("pk_sandbox_hit_type_requirement")
        ),
    )
    op.create_index(
        op.f("ix_sandbox_hit_type_requirement_qualification_type_id"),
        "sandbox_hit_type_requirement",
        ["qualification_type_id"],
        unique=False,
    )
    types = sa.table(
        "sandbox_hit_type",
        sa.column("hit_type_id", sa.String()),
        sa.column("qualification_requirements", sa.JSON()),
    )
    bind = op.get_bind()
    last = ""
    while True:  # keyset pages: a server with many HIT types is not read at once
        rows = bind.execute(
            sa.select(types.c.hit_type_id, types.c.qualification_requirements)
            .where(types.c.hit_type_id > last)
            .order_by(types.c.hit_type_id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        values = [
            {"hit_type_id": htid, "qualification_type_id": qid}
            for htid, reqs in rows
            for qid in sorted(_requiring(reqs))
        ]
        if values:
            bind.execute(sa.insert(table), values)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index(
        op.f("ix_sandbox_hit_type_requirement_qualification_type_id"),
        table_name="sandbox_hit_type_requirement",
    )
    op.drop_table("sandbox_hit_type_requirement")
