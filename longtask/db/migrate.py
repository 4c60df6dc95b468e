"""Apply the schema migrations: ``longtask-migrate`` or :func:`upgrade` from code.

Migrations are alembic revisions holding plain SQL, under ``migrations/versions``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

_HERE = Path(__file__).resolve().parent


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    # alembic goes through SQLAlchemy; the psycopg2 driver is the one the runner uses.
    sa_url = url.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
        "postgres://", "postgresql+psycopg2://", 1
    )
    cfg.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` (libpq URL) up to ``revision``."""
    command.upgrade(_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` down to ``revision`` (``base`` drops everything)."""
    command.downgrade(_config(url), revision)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``longtask-migrate [--url URL] [upgrade|downgrade] [REVISION]``."""
    from longtask.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description="Apply LongTask's database migrations.")
    parser.add_argument("--url", help="libpq URL (default: $LONGTASK_DATABASE_URL)")
    parser.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    url = args.url or DatabaseSettings().database_url  # type: ignore[call-arg]
    if args.action == "upgrade":
        upgrade(url, args.revision)
    else:
        downgrade(url, args.revision)


if __name__ == "__main__":
    main()
