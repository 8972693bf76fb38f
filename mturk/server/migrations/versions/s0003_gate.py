"""HIT gates: each HIT type's Exists requirements as a key on the type and its HITs, for the poll.

A worker lacking a gate's qualification polls the gates they pass by index
(ix_sandbox_hit_gate_is_open_expiration): a new worker finds the warm-up pages (mturk/warmup.py)
without reading the HITs for warmed-up workers. Existing HIT types and their HITs are
backfilled from the types' qualification_requirements JSON, in keyset batches.

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


def _gate(reqs: list | None) -> str | None:
    # As mturk.server.common.gate_of at this revision (a migration keeps its own copy).
    out = set()
    for r in reqs or []:
        qid = str(r.get("QualificationTypeId", ""))
        system = qid.startswith("00000000000000000") or qid.startswith(
            "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"
        )
        if r.get("Comparator") == "Exists" and not system:
            out.add(qid)
    return ",".join(sorted(out)) or None


def upgrade() -> None:
    gates = op.create_table(
        "sandbox_gate",
        sa.Column("gate", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("gate", name=op.f("pk_sandbox_gate")),
    )
    with op.batch_alter_table("sandbox_hit_type") as b:
        b.add_column(sa.Column("gate", sa.String(length=256), nullable=True))
    with op.batch_alter_table("sandbox_hit") as b:
        b.add_column(sa.Column("gate", sa.String(length=256), nullable=True))
    types = sa.table(
        "sandbox_hit_type",
        sa.column("hit_type_id", sa.String()),
        sa.column("qualification_requirements", sa.JSON()),
        sa.column("gate", sa.String()),
    )
    hits = sa.table("sandbox_hit", sa.column("hit_type_id", sa.String()), sa.column("gate"))
    bind = op.get_bind()
    seen: set[str] = set()
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
        for htid, reqs in rows:
            gate = _gate(reqs)
            if gate is None:
                continue
            bind.execute(sa.update(types).where(types.c.hit_type_id == htid).values(gate=gate))
            bind.execute(sa.update(hits).where(hits.c.hit_type_id == htid).values(gate=gate))
            if gate not in seen:
                seen.add(gate)
                bind.execute(sa.insert(gates), [{"gate": gate}])
        last = rows[-1][0]
    op.create_index(
        "ix_sandbox_hit_gate_is_open_expiration",
        "sandbox_hit",
        ["gate", "is_open", "expiration", "hit_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sandbox_hit_gate_is_open_expiration", table_name="sandbox_hit")
    with op.batch_alter_table("sandbox_hit") as b:
        b.drop_column("gate")
    with op.batch_alter_table("sandbox_hit_type") as b:
        b.drop_column("gate")
    op.drop_table("sandbox_gate")
