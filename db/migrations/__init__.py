"""Alembic migrations of the imnet schema; HEADS names the newest revision(s)."""

# Checked against the version table before alembic is imported, so an up-to-date database costs
# one query instead of alembic's import and script scan (~0.2 s per command). A new revision
# must update this; tests/db/test_models.py fails until it does.
HEADS = frozenset({"0009"})
