"""Alembic environment of the server branch (mturk/server/models.py); body in db/alembic_env.py."""

from alembic import context

from db.alembic_env import run_env
from mturk.server.models import ServerBase

run_env(context, ServerBase.metadata)
