"""Structure: drop the unused synset_target table (issue 19).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("synset_target")


def downgrade() -> None:
    op.create_table(
        "synset_target",
        sa.Column("wnid", sa.String(length=16), nullable=False),
        sa.Column("run", sa.String(length=64), nullable=False),
        sa.Column("wanted_images", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["wnid"], ["synset.wnid"], name=op.f("fk_synset_target_wnid_synset")
        ),
        sa.PrimaryKeyConstraint("wnid", "run", name=op.f("pk_synset_target")),
    )
