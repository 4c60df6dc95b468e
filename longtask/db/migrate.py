"""Apply the schema migrations: ``longtask-migrate`` or :func:`upgrade` from code.

Migrations are alembic revisions holding plain SQL, under ``migrations/versions``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

from longtask.db.roles import DatabaseRoles

_HERE = Path(__file__).resolve().parent


def _config(url: str, roles: DatabaseRoles | None = None) -> Config:
    cfg = Config()
    # The group roles' names, for migration 0003 (default: LONGTASK_DATABASE_ROLE_*).
    cfg.attributes["roles"] = roles or DatabaseRoles()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    # alembic goes through SQLAlchemy; the psycopg2 driver is the one the runner uses.
    sa_url = url.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
        "postgres://", "postgresql+psycopg2://", 1
    )
    cfg.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, roles: DatabaseRoles | None = None) -> None:
    """Bring the database at ``url`` (libpq URL of the migration owner) up to ``revision``;
    ``roles`` names the components' group roles (default: ``LONGTASK_DATABASE_ROLE_*``)."""
    command.upgrade(_config(url, roles), revision)


def downgrade(url: str, revision: str, *, roles: DatabaseRoles | None = None) -> None:
    """Take the database at ``url`` down to ``revision`` (``base`` drops everything)."""
    command.downgrade(_config(url, roles), revision)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``longtask-migrate [--url URL] [upgrade|downgrade] [REVISION]``."""
    from longtask.settings import MigrateSettings

    parser = argparse.ArgumentParser(description="Apply LongTask's database migrations.")
    parser.add_argument("--url", help="libpq URL of the migration owner (default: "
                        "$LONGTASK_MIGRATE_DATABASE_URL, else $LONGTASK_DATABASE_URL)")
    parser.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    url = args.url or MigrateSettings().database_url  # type: ignore[call-arg]
    if args.action == "upgrade":
        upgrade(url, args.revision)
    else:
        downgrade(url, args.revision)


if __name__ == "__main__":
    main()
