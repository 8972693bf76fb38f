"""Curation at scale: leases on image rows for the curate scan, and indexes on the work left.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Partial indexes: they hold only the images the scan still has to do, so they stay small once a
# collection is curated, and a claim reads them in sha256 order instead of walking the table.
_UNCHECKED = "quality IS NULL"
_UNHASHED = "phash IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        # Nothing looks images up by hash value (near-duplicates are matched in memory), and on
        # SQLite this index drew the claim of unhashed images into a sort of every NULL hash.
        batch_op.drop_index("ix_image_phash")
    op.create_index(
        "ix_image_unchecked",
        "image",
        ["sha256"],
        unique=False,
        sqlite_where=sa.text(_UNCHECKED),
        postgresql_where=sa.text(_UNCHECKED),
    )
    op.create_index(
        "ix_image_unhashed",
        "image",
        ["sha256"],
        unique=False,
        sqlite_where=sa.text(_UNHASHED),
        postgresql_where=sa.text(_UNHASHED),
    )
    _upgrade_export()


def _upgrade_export() -> None:
    # Resumable, sharded exports: the plan is stored as export_item rows in plan order, each
    # worker records the file it wrote; rows written before this revision are finished exports.
    with op.batch_alter_table("export", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="complete", nullable=False)
        )
    with op.batch_alter_table("export_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("status", sa.String(length=8), server_default="done", nullable=False)
        )
        batch_op.add_column(sa.Column("url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("file_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("file_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.create_index(
        "ix_export_item_export_id_position",
        "export_item",
        ["export_id", "position"],
        unique=True,
    )


def _downgrade_export() -> None:
    op.drop_index("ix_export_item_export_id_position", table_name="export_item")
    with op.batch_alter_table("export_item", schema=None) as batch_op:
        for col in ("error", "height", "width", "file_bytes", "file_sha256", "url", "status"):
            batch_op.drop_column(col)
        batch_op.drop_column("position")
    with op.batch_alter_table("export", schema=None) as batch_op:
        batch_op.drop_column("status")


def downgrade() -> None:
    _downgrade_export()
    op.drop_index("ix_image_unhashed", table_name="image")
    op.drop_index("ix_image_unchecked", table_name="image")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index("ix_image_phash", ["phash"], unique=False)
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
