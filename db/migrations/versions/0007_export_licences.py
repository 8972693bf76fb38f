"""Export licences: each export item names the candidate it was exported as (issue 17).

The licence, author, page and source API belong to a candidate (one URL at one source): the same
bytes can be found at several sources under different licences. The export already picks one
owning candidate per image (and `--licenses` picks among them), so it records that candidate's id
and joins to candidate, a primary-key lookup per keyset page, when it writes the manifest.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_item") as batch_op:
        batch_op.add_column(sa.Column("candidate_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_item") as batch_op:
        batch_op.drop_column("candidate_id")
