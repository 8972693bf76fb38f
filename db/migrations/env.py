"""Alembic environment of the core schema (db/models.py); the shared body is db/alembic_env.py."""

from alembic import context

from db.alembic_env import run_env
from db.models import Base

run_env(context, Base.metadata)
