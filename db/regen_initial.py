"""Pre-release helper: rewrite migration 0001 from the models (remove once a release has shipped)."""

import os
import tempfile
from pathlib import Path

from alembic import command

from db.session import MIGRATIONS, alembic_config

if __name__ == "__main__":
    versions = MIGRATIONS / "versions"
    for p in versions.glob("0001_*.py"):
        p.unlink()
    with tempfile.TemporaryDirectory() as d:
        cfg = alembic_config(f"sqlite:///{Path(d) / 'gen.sqlite3'}")
        command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
    os.system(f"ruff format -q {versions} && ruff check -q --fix {versions}")
    print("rewrote", next(versions.glob("0001_*.py")))
